"""A node's time limit: which one applies, and stopping a block that runs past it.

The limit is the node's ``timeout_seconds``, else its block's, else
AUTOEXEC_NODE_TIMEOUT_SECONDS (0: none). It is enforced on every pool at each yield and, for
async blocks, at every poll of a pending await (``node_runner``). A sync block blocked inside
one call is interrupted by a SIGALRM timer where the node runs in a process's main thread (the
prefork and solo pools); on the threads pool it stops at its next yield or return, since Python
cannot interrupt another thread.
"""

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
    """A node's running time against its limit."""

    def __init__(self, node_id: str, limit: float | None) -> None:
        self.node_id, self.limit = node_id, limit
        self.started = time.monotonic()
        self.in_block = False  # the block's own code is running (the alarm may interrupt it)

    def expired(self) -> bool:
        return self.limit is not None and time.monotonic() - self.started >= self.limit

    def error(self) -> NodeTimeoutError:
        return NodeTimeoutError(
            f"node {self.node_id!r} timed out: it ran longer than its limit of "
            f"{self.limit:g} s (timeout_seconds)"
        )

    def check(self) -> None:
        if self.expired():
            raise self.error()

    @contextmanager
    def block_running(self) -> Iterator[None]:
        """Around a call into the block: the alarm may interrupt it, nothing else."""
        self.check()
        self.in_block = True
        try:
            yield
        finally:
            self.in_block = False


@contextmanager
def alarm(clock: Clock) -> Iterator[None]:
    """Arm a SIGALRM for the clock's limit when this is a main thread (else do nothing)."""
    if clock.limit is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        if clock.in_block:
            raise clock.error()
        # Outside the block (recording outputs): the next check stops the node.

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(clock.limit, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
