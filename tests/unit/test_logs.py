"""``AUTOEXEC_LOG_FORMAT=json``: one JSON object per log record, a node's context as keys."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from autoexec.engine.node_execution import NodeJob, node_logger
from autoexec.logs import JsonFormatter

JOB = NodeJob(
    node_exec_id=7,
    graph_exec_id="exec-1",
    graph_id="graph-1",
    graph_version=1,
    node_id="calc",
    block_id="calculator",
    user_id="alice",
    inputs={"a": 1},
    attempt=1,
)
CONTEXT = {
    "user": "alice",
    "graph": "graph-1",
    "graph_exec": "exec-1",
    "node": "calc",
    "node_exec": 7,
    "block": "calculator",
}


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """What the ``autoexec.node`` logger writes, through the JSON formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("autoexec.node")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def entries(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_node_line_has_its_context_as_keys_and_its_message_as_written(
    lines: io.StringIO,
) -> None:
    node_logger(JOB).info("completed with %d output(s)", 2)
    [entry] = entries(lines)
    assert set(entry) == {"time", "level", "logger", "message", *CONTEXT}
    assert {key: entry[key] for key in CONTEXT} == CONTEXT
    assert (entry["level"], entry["logger"]) == ("INFO", "autoexec.node")
    assert entry["message"] == "completed with 2 output(s)"
    assert entry["time"].endswith("+00:00")


def test_an_exception_is_one_key_of_the_same_line(lines: io.StringIO) -> None:
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        node_logger(JOB).exception("failed with an unexpected error")
    [entry] = entries(lines)
    assert entry["message"] == "failed with an unexpected error"
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert entry["exception"].endswith("ZeroDivisionError: division by zero")


def test_a_line_not_about_a_node_has_no_context_keys() -> None:
    record = logging.LogRecord("autoexec.engine", logging.WARNING, __file__, 1, "x=%s", (1,), None)
    entry = json.loads(JsonFormatter().format(record))
    assert set(entry) == {"time", "level", "logger", "message"}
    assert (entry["level"], entry["logger"], entry["message"]) == (
        "WARNING",
        "autoexec.engine",
        "x=1",
    )
