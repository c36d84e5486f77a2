"""A node's time limit, and stopping a running block: past its limit, or when a watcher finds
its run cancelled or the node taken over.

The limit is the node's ``timeout_seconds``, else its block's, else
AUTOEXEC_NODE_TIMEOUT_SECONDS (0: none). A stop is enforced on every pool at each yield and,
for async blocks, at every poll of a pending await (``block_run.iteration``), which is
cancelled. A sync block blocked inside one call is interrupted by SIGALRM where the node runs
in a process's main thread (the prefork and solo pools): the handler raises only while the
block's own code runs, never inside the engine's. Elsewhere (the threads pool, the embedded
stack) Python cannot interrupt a thread, so the block's sync calls run on a helper thread of
the node run (``block_run.iteration.BlockThread``) while the node's thread waits, checking its
clock: on a stop the node's thread stops waiting and ends the node, and the hanging call is
abandoned (it returns later on the helper thread, and what it produced is discarded)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from autoexec.blocks.base import Block
from autoexec.errors import NodeTimeoutError
from autoexec.graph import Node


def time_limit(node: Node | None, block: type[Block[Any]] | None, default: float) -> float | None:
    """The seconds a node may run, or None for no limit."""
    for limit in (
        node.timeout_seconds if node else None,
        block.timeout_seconds if block else None,
        default,
    ):
        if limit:
            return float(limit)
    return None


class Clock:
    """A node's running time against its limit, and a stop another thread may ask for."""

    def __init__(self, node_id: str, limit: float | None) -> None:
        self.node_id, self.limit = node_id, limit
        self.started = time.monotonic()
        self.in_block = False  # the block's own code is running (the alarm may interrupt it)
        self.pending: Exception | None = None  # a stop asked for by ``interrupt``

    def expired(self) -> bool:
        return self.limit is not None and time.monotonic() - self.started >= self.limit

    def error(self) -> NodeTimeoutError:
        return NodeTimeoutError(
            f"node {self.node_id!r} timed out: it ran longer than its limit of "
            f"{self.limit:g} s (timeout_seconds)"
        )

    def check(self) -> None:
        """Raise the stop asked for, or the timeout, if any."""
        if self.pending is not None:
            raise self.pending
        if self.expired():
            raise self.error()

    def interrupt(self, stop: Exception) -> None:
        """Stop the node with ``stop``: at its next check, or at once if its block is blocked
        in the main thread (called from another thread)."""
        self.pending = stop
        with _lock:
            if _current is self and self.in_block:
                signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGALRM)

    @contextmanager
    def block_running(self) -> Iterator[None]:
        """Around a call into the block: the alarm may interrupt it, nothing else."""
        self.check()
        self.in_block = True
        try:
            yield
        finally:
            self.in_block = False


_lock = threading.Lock()
_current: Clock | None = None  # the clock of the node the main thread runs
_installed = False


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    clock = _current
    if clock is not None and clock.in_block:
        clock.check()  # raises: the block stops here
    # Otherwise the engine's own code runs (or no node does): the next check stops the node.


@contextmanager
def alarm(clock: Clock) -> Iterator[None]:
    """While a node runs in the main thread: a SIGALRM at its limit, and ``interrupt`` able
    to signal it; elsewhere, nothing (the checks at yields and polls still apply)."""
    global _current, _installed
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if not _installed:
        # Left installed: a signal arriving late finds no clock and does nothing.
        signal.signal(signal.SIGALRM, _on_alarm)
        _installed = True
    with _lock:
        _current = clock
    if clock.limit is not None:
        signal.setitimer(signal.ITIMER_REAL, max(clock.limit, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        with _lock:
            _current = None
