"""What a block run that raised ends with: the error routing shared by the node task, the
fan-out element and the reference interpreter, and the message a failed node yields."""

from __future__ import annotations

import enum
import logging
from typing import Any

from autoexec.blocks.base import Block
from autoexec.errors import (
    AutoexecError,
    BlockDisabledError,
    ExecutionStoppedError,
    InputValidationError,
    NodeTimeoutError,
    WorkerLostError,
)

USER_ERRORS = (ValueError, BlockDisabledError, InputValidationError)

# The node stat naming the type of an unexpected error: a bug, not the graph's or its inputs'
# fault (it raises a system alert, autoexec.billing.notifications).
UNEXPECTED_ERROR = "unexpected_error"


class SupersededError(AutoexecError):
    """Another attempt took this node execution over (its message was re-delivered while this
    run was still alive); this run stops and records nothing more."""


class Ending(enum.Enum):
    """How a run that raised ends."""

    SUPERSEDED = "superseded"  # another attempt took the node over: record nothing
    STOPPED = "stopped"  # its run was cancelled or stopped, or is past a limit
    RETRY = "retry"  # the block failed transiently with retries left
    FAILED = "failed"  # the node fails, yielding ``error_message`` on its error pin


def ending_of(
    exc: Exception, block: type[Block[Any]], from_block: bool, retries_done: int | None
) -> Ending:
    """How a run that raised ``exc`` ends; ``from_block``: the block's own code raised it (an
    error of the engine's is never retried); ``retries_done``: None if the run is never
    retried (a fan-out element, the reference)."""
    if isinstance(exc, SupersededError):
        return Ending.SUPERSEDED
    if isinstance(exc, ExecutionStoppedError):
        return Ending.STOPPED
    if from_block and retries_done is not None and _retry_left(block, retries_done, exc):
        return Ending.RETRY
    return Ending.FAILED


def _retry_left(block: type[Block[Any]], retries_done: int, exc: Exception) -> bool:
    return block.is_transient(exc) and retries_done < block.retries


def is_user_error(exc: BaseException) -> bool:
    """A mistake in the graph or its inputs (logged at info, no stack trace in alerts)."""
    return isinstance(exc, USER_ERRORS)


def unexpected_error_type(exc: BaseException) -> str | None:
    """The type name of ``exc`` if it is an unexpected error, else None."""
    if is_user_error(exc) or isinstance(exc, AutoexecError):
        return None
    return type(exc).__name__


def error_message(exc: BaseException) -> str:
    """What a failed node yields on its ``error`` pin."""
    text = str(exc)
    if is_user_error(exc) or isinstance(exc, NodeTimeoutError | WorkerLostError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def log_failure(logger: logging.LoggerAdapter[logging.Logger], exc: BaseException) -> None:
    """A failure logged at the level its kind deserves: a user error at info, the engine's own
    (a timeout, lost workers: the message says it all) at warning, anything else with its
    stack trace."""
    if is_user_error(exc):
        logger.info("failed: %s", error_message(exc))
    elif isinstance(exc, AutoexecError):
        logger.warning("failed: %s", error_message(exc))
    else:
        logger.exception("failed with an unexpected error")
