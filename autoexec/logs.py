"""How autoexec's processes log: Celery's text lines, or with ``AUTOEXEC_LOG_FORMAT=json`` one
JSON object per line (time, level, logger, message, the node context, the exception).

A node's log lines carry its context (``NodeLogAdapter``): in text as a ``[user=… …]`` prefix of
the message, in JSON as separate keys, with the message left as the block or engine wrote it.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from celery.signals import after_setup_logger, after_setup_task_logger
from celery.utils.log import get_multiprocessing_logger

from autoexec.settings import get_settings

NODE_CONTEXT = ("user", "graph", "graph_exec", "node", "node_exec", "block")
# The CLI prints a saved graph's warnings itself ("warning: ..."); its log would repeat them.
CLI_QUIET_LOGGERS = ("autoexec.graph",)


def context_prefix(context: Mapping[str, object]) -> str:
    """What a text log line of a node starts with."""
    return "[" + " ".join(f"{key}={value}" for key, value in context.items()) + "] "


def node_context(record: logging.LogRecord) -> dict[str, Any]:
    """The node context a record carries (none for a line not about a node)."""
    return {key: getattr(record, key) for key in NODE_CONTEXT if hasattr(record, key)}


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        context = node_context(record)
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage().removeprefix(context_prefix(context)),
            **context,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str, ensure_ascii=False)


def wants_json() -> bool:
    return get_settings().log_format == "json"


def _format_handlers(logger: logging.Logger | None) -> None:
    for handler in logger.handlers if logger is not None else ():
        handler.setFormatter(JsonFormatter())


def _json_for_celery(logger: logging.Logger, **_: Any) -> None:
    if wants_json():
        _format_handlers(logger)
        _format_handlers(get_multiprocessing_logger())


def use_log_format_in_celery() -> None:
    """Celery's processes (worker, beat) log in the configured format, once Celery has set up
    its handlers (also the pool processes, which inherit them)."""
    after_setup_logger.connect(_json_for_celery, weak=False)
    after_setup_task_logger.connect(_json_for_celery, weak=False)


class _JsonStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(CLI_QUIET_LOGGERS) and super().filter(record)


def use_log_format_in_cli() -> None:
    """The CLI's log lines (warnings and errors, on stderr) in the configured format; text
    leaves Python's default."""
    root = logging.getLogger()
    if not wants_json() or any(isinstance(h, _JsonStderrHandler) for h in root.handlers):
        return
    handler = _JsonStderrHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
