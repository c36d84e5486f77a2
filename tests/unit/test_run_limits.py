"""Run limits: when a run must stop and why, and which run deadlines are refused."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest

from autoexec.block_run.iteration import iterate_block, worker_event_loop
from autoexec.blocks.base import RunContext
from autoexec.blocks.builtin.flow import WaitBlock
from autoexec.engine.limits import check_max_run_seconds, limit_stop
from autoexec.errors import ExecutionStoppedError, InputValidationError
from autoexec.statuses import ExecutionStatus
from autoexec.store.tables import GraphExecution

STARTED = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def execution(count: int = 0, max_run_seconds: float | None = None) -> GraphExecution:
    return GraphExecution(
        node_execution_count=count, max_run_seconds=max_run_seconds, started_at=STARTED
    )


def test_a_run_within_its_limits_goes_on() -> None:
    assert limit_stop(execution(count=5, max_run_seconds=60), 5, STARTED) is None


def test_one_node_execution_past_the_limit_stops_the_run() -> None:
    stop = limit_stop(execution(count=6), 5, STARTED)
    assert stop is not None
    assert stop.status is ExecutionStatus.FAILED
    assert stop.reason == (
        "stopped after 5 node executions: the limit is AUTOEXEC_MAX_NODE_EXECUTIONS_PER_RUN=5"
    )


def test_the_deadline_counts_from_the_start() -> None:
    run = execution(max_run_seconds=2.5)
    assert limit_stop(run, 10, STARTED + timedelta(seconds=2.4)) is None
    stop = limit_stop(run, 10, STARTED + timedelta(seconds=2.5))
    assert stop is not None
    assert stop.reason == "stopped: ran longer than max_run_seconds=2.5"


def test_a_run_not_yet_started_has_no_deadline_yet() -> None:
    run = GraphExecution(node_execution_count=0, max_run_seconds=1.0, started_at=None)
    assert limit_stop(run, 10, STARTED + timedelta(days=1)) is None


@pytest.mark.parametrize("value", [None, 1, 0.5, 3600])
def test_a_positive_deadline_is_accepted(value: float | None) -> None:
    assert check_max_run_seconds(value) == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "max_run_seconds must be a number of seconds greater than 0, got 0"),
        (-3, "max_run_seconds must be a number of seconds greater than 0, got -3"),
        ("10", "max_run_seconds must be a number of seconds greater than 0, got '10'"),
        (True, "max_run_seconds must be a number of seconds greater than 0, got True"),
        (float("nan"), "max_run_seconds must be a number of seconds greater than 0, got nan"),
        (float("inf"), "max_run_seconds must be at most 315360000 (ten years), got inf"),
        (1e12, "max_run_seconds must be at most 315360000 (ten years), got 1000000000000.0"),
    ],
)
def test_a_bad_deadline_is_refused(value: object, message: str) -> None:
    with pytest.raises(InputValidationError) as info:
        check_max_run_seconds(value)
    assert str(info.value) == message


def test_an_async_block_awaiting_when_a_stop_is_requested_stops() -> None:
    requests = iter([False, False, True])
    ctx = RunContext(
        user_id="u",
        graph_id="g",
        graph_version=1,
        graph_exec_id="ge",
        node_id="nap",
        node_exec_id="1",
        block_id="wait",
        logger=logging.LoggerAdapter(logging.getLogger("tests.limits")),
        is_cancelled=lambda: next(requests),
    )
    with pytest.raises(ExecutionStoppedError):
        list(iterate_block(WaitBlock, {"seconds": 3600, "data": "late"}, ctx))


def test_a_failing_stop_check_leaves_no_block_step_pending_on_the_worker_loop() -> None:
    def redis_down() -> bool:
        raise ConnectionError("Redis is down")

    ctx = RunContext(
        user_id="u",
        graph_id="g",
        graph_version=1,
        graph_exec_id="ge",
        node_id="nap",
        node_exec_id="1",
        block_id="wait",
        logger=logging.LoggerAdapter(logging.getLogger("tests.limits")),
        is_cancelled=redis_down,
    )
    with pytest.raises(ConnectionError):
        list(iterate_block(WaitBlock, {"seconds": 3600, "data": "late"}, ctx))
    assert asyncio.all_tasks(worker_event_loop()) == set()
