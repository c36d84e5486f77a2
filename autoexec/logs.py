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

from autoexec.settings import Settings

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


def wants_json(settings: Settings) -> bool:
    return settings.log_format == "json"


def format_as_json(logger: logging.Logger | None) -> None:
    """Make ``logger``'s handlers write JSON (Celery's, once it has set them up: the app
    connects this to its logging signals)."""
    for handler in logger.handlers if logger is not None else ():
        handler.setFormatter(JsonFormatter())


class _JsonStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(CLI_QUIET_LOGGERS) and super().filter(record)


def use_log_format_in_cli(settings: Settings) -> None:
    """The CLI's log lines (warnings and errors, on stderr) in the configured format; text
    leaves Python's default."""
    root = logging.getLogger()
    if not wants_json(settings) or any(isinstance(h, _JsonStderrHandler) for h in root.handlers):
        return
    handler = _JsonStderrHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
