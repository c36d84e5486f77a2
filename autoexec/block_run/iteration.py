"""Driving one block on one set of inputs: input validation, sync and async generators, the
time limit and stops (a helper thread where no signal can interrupt the block), each output
checked against the block's ``Output``."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import os
import threading
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator
from contextlib import nullcontext
from queue import Empty, SimpleQueue
from typing import Any, TypeVar, cast

from pydantic import ValidationError

from autoexec.blocks.base import Block, RunContext, Suspend, Yield
from autoexec.dataflow import describe_validation_error
from autoexec.errors import BlockDisabledError, ExecutionStoppedError, InputValidationError
from autoexec.pins import merge_dynamic_inputs
from autoexec.timeouts import Clock

STOP_POLL_SECONDS = 0.25
_T = TypeVar("_T")


def iterate_block(
    block_cls: type[Block[Any]],
    inputs: dict[str, Any],
    ctx: RunContext,
    clock: Clock | None = None,
) -> Generator[Yield, None, None]:
    """Run ``block_cls`` on ``inputs`` and yield each checked ``(pin, value)`` as it comes,
    and last the ``Suspend`` that ends it, if the block suspends; with a ``clock``, past its
    limit the block is stopped with ``NodeTimeoutError``."""
    if block_cls.disabled:
        raise BlockDisabledError(f"block {block_cls.id!r} is disabled and cannot run")
    try:
        data = block_cls.Input.model_validate(merge_dynamic_inputs(inputs))
    except ValidationError as exc:
        raise InputValidationError(
            f"invalid input for block {block_cls.id!r}: {describe_validation_error(exc)}"
        ) from None
    if clock is not None and threading.current_thread() is not threading.main_thread():
        yield from _on_block_thread(block_cls, data, ctx, clock)
        return
    with clock.block_running() if clock else nullcontext():
        produced = block_cls().run(data, ctx)
    pairs: Iterable[Yield]
    if isinstance(produced, AsyncIterator):
        pairs = _drain_async(produced, ctx.is_cancelled, clock.check if clock else _no_check)
    else:
        pairs = _timed(produced, clock) if clock else produced
    yield from _checked(block_cls, pairs)


def _checked(block_cls: type[Block[Any]], pairs: Iterable[Yield]) -> Iterator[Yield]:
    """Each pair checked against the block's ``Output``; a ``Suspend`` ends the run."""
    for item in pairs:
        if isinstance(item, Suspend):
            yield item
            return
        pin, value = item
        yield pin, block_cls.validate_output(pin, value)


def _timed(pairs: Iterable[Yield], clock: Clock) -> Iterator[Yield]:
    """The block's pairs, each produced under its clock (an alarm may interrupt it)."""
    iterator = iter(pairs)
    while True:
        with clock.block_running():
            pair = next(iterator, None)
        if pair is None:
            return
        yield pair


def _on_block_thread(
    block_cls: type[Block[Any]], data: Any, ctx: RunContext, clock: Clock
) -> Iterator[Yield]:
    """``iterate_block`` outside the main thread, where no signal can interrupt a call: the
    block's sync calls run on a ``BlockThread``, so a stop or the limit frees this thread."""
    calls = BlockThread(clock)
    try:
        start = functools.partial(block_cls().run, data, ctx)
        # Calling a generator function runs none of its body: no need for the thread then.
        direct = inspect.isgeneratorfunction(start) or inspect.isasyncgenfunction(start)
        produced = _checked_call(start, clock) if direct else calls.call(start)
        pairs: Iterable[Yield]
        if isinstance(produced, AsyncIterator):
            pairs = _drain_async(produced, ctx.is_cancelled, clock.check)
        else:
            pairs = calls.iterate(produced)
        yield from _checked(block_cls, pairs)
    finally:
        calls.finish()


def _checked_call(function: Callable[[], _T], clock: Clock) -> _T:
    clock.check()
    return function()


class BlockThread:
    """A daemon thread, started at the first call, that makes one node run's calls into its
    block in order (so a generator is only ever advanced by one thread), in a copy of the
    caller's context. The caller waits for each result, checking its clock every
    ``STOP_POLL_SECONDS``: on a stop or past the limit it raises at once, leaving a call that
    hangs behind; ``finish`` then has the thread close the block's iterator once that call
    returns, and exit. What an abandoned call returns is discarded."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.calls: SimpleQueue[Callable[[], Any] | None] = SimpleQueue()
        self.results: SimpleQueue[tuple[bool, Any]] = SimpleQueue()
        self.started = False
        self.iterator: Iterator[Any] | None = None

    def call(self, function: Callable[[], _T]) -> _T:
        self.clock.check()
        self._start()
        self.calls.put(function)
        while True:
            try:
                returned, value = self.results.get(timeout=STOP_POLL_SECONDS)
            except Empty:
                self.clock.check()
                continue
            if returned:
                return cast(_T, value)
            raise value

    def iterate(self, pairs: Iterable[Yield]) -> Iterator[Yield]:
        self.iterator = iterator = iter(pairs)
        while (pair := self.call(functools.partial(next, iterator, None))) is not None:
            yield pair

    def finish(self) -> None:
        if not self.started:
            return
        close = getattr(self.iterator, "close", None)
        if close is not None:
            self.calls.put(close)
        self.calls.put(None)

    def _start(self) -> None:
        if self.started:
            return
        context = contextvars.copy_context()
        name = f"{threading.current_thread().name}-block"
        threading.Thread(target=context.run, args=(self._serve,), name=name, daemon=True).start()
        self.started = True

    def _serve(self) -> None:
        while (function := self.calls.get()) is not None:
            try:
                self.results.put((True, function()))
            except BaseException as exc:  # raised again in the caller's thread
                self.results.put((False, exc))


def _no_check() -> None:
    return None


def _drain_async(
    agen: AsyncIterator[Yield],
    should_stop: Callable[[], bool],
    check: Callable[[], None],
) -> Iterator[Yield]:
    loop = worker_event_loop()
    while True:
        pair = loop.run_until_complete(_next_unless_stopped(agen, should_stop, check))
        if pair is None:
            return
        yield pair


async def _next_unless_stopped(
    agen: AsyncIterator[Yield],
    should_stop: Callable[[], bool],
    check: Callable[[], None],
) -> Yield | None:
    """The next pair (None at the end); an await that outlasts a stop request or the time
    limit (``check`` raises) is cancelled, so a block sleeping for an hour stops within
    ``STOP_POLL_SECONDS``."""
    step = asyncio.ensure_future(_anext(agen))
    try:
        while True:
            done, _ = await asyncio.wait({step}, timeout=STOP_POLL_SECONDS)
            if done:
                return step.result()
            check()
            if should_stop():
                raise ExecutionStoppedError()
    finally:
        # Whatever ends the wait (a stop, a failing stop check, a time limit), the block's
        # step must not stay pending on the shared loop, to resume inside the next node.
        if not step.done():
            step.cancel()
            await asyncio.gather(step, return_exceptions=True)


async def _anext(agen: AsyncIterator[Yield]) -> Yield | None:
    try:
        return await agen.__anext__()
    except StopAsyncIteration:
        return None


_loops = threading.local()


def worker_event_loop() -> asyncio.AbstractEventLoop:
    """The event loop of this worker process (or thread), created once and reused."""
    owner = getattr(_loops, "pid", None)
    loop: asyncio.AbstractEventLoop | None = getattr(_loops, "loop", None)
    if loop is None or owner != os.getpid() or loop.is_closed():
        loop = asyncio.new_event_loop()
        _loops.loop, _loops.pid = loop, os.getpid()
    return loop
