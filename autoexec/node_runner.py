"""Running one block on one set of inputs: validation, sync/async generators, error semantics.

Shared by the Celery node task and the reference interpreter, so both behave the same.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from pydantic import ValidationError

from autoexec.blocks.base import Block, RunContext
from autoexec.dataflow import describe_validation_error
from autoexec.errors import BlockDisabledError, ExecutionStoppedError, InputValidationError
from autoexec.pins import merge_dynamic_inputs

log = logging.getLogger(__name__)

STOP_POLL_SECONDS = 0.25
USER_ERRORS = (ValueError, BlockDisabledError, InputValidationError)


def iterate_block(
    block_cls: type[Block[Any]], inputs: dict[str, Any], ctx: RunContext
) -> Iterator[tuple[str, Any]]:
    """Run ``block_cls`` on ``inputs`` and yield each checked ``(pin, value)`` as it comes."""
    if block_cls.disabled:
        raise BlockDisabledError(f"block {block_cls.id!r} is disabled and cannot run")
    try:
        data = block_cls.Input.model_validate(merge_dynamic_inputs(inputs))
    except ValidationError as exc:
        raise InputValidationError(
            f"invalid input for block {block_cls.id!r}: {describe_validation_error(exc)}"
        ) from None
    produced = block_cls().run(data, ctx)
    if isinstance(produced, AsyncIterator):
        pairs = _drain_async(produced, ctx.is_cancelled)
    else:
        pairs = produced
    for pin, value in pairs:
        yield pin, block_cls.validate_output(pin, value)


def _drain_async(
    agen: AsyncIterator[tuple[str, Any]], should_stop: Callable[[], bool]
) -> Iterator[tuple[str, Any]]:
    loop = worker_event_loop()
    while True:
        pair = loop.run_until_complete(_next_unless_stopped(agen, should_stop))
        if pair is None:
            return
        yield pair


async def _next_unless_stopped(
    agen: AsyncIterator[tuple[str, Any]], should_stop: Callable[[], bool]
) -> tuple[str, Any] | None:
    """The next pair (None at the end); an await that outlasts a stop request is cancelled,
    so a block sleeping for an hour stops within ``STOP_POLL_SECONDS``."""
    step = asyncio.ensure_future(_anext(agen))
    try:
        while True:
            done, _ = await asyncio.wait({step}, timeout=STOP_POLL_SECONDS)
            if done:
                return step.result()
            if should_stop():
                raise ExecutionStoppedError()
    finally:
        # Whatever ends the wait (a stop, a failing stop check, a time limit), the block's
        # step must not stay pending on the shared loop, to resume inside the next node.
        if not step.done():
            step.cancel()
            await asyncio.gather(step, return_exceptions=True)


async def _anext(agen: AsyncIterator[tuple[str, Any]]) -> tuple[str, Any] | None:
    try:
        return await agen.__anext__()
    except StopAsyncIteration:
        return None


def is_user_error(exc: BaseException) -> bool:
    """A mistake in the graph or its inputs (logged at info, no stack trace in alerts)."""
    return isinstance(exc, USER_ERRORS)


def error_message(exc: BaseException) -> str:
    """What a failed node yields on its ``error`` pin."""
    text = str(exc)
    if is_user_error(exc):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_loops = threading.local()


def worker_event_loop() -> asyncio.AbstractEventLoop:
    """The event loop of this worker process (or thread), created once and reused."""
    owner = getattr(_loops, "pid", None)
    loop: asyncio.AbstractEventLoop | None = getattr(_loops, "loop", None)
    if loop is None or owner != os.getpid() or loop.is_closed():
        loop = asyncio.new_event_loop()
        _loops.loop, _loops.pid = loop, os.getpid()
    return loop
