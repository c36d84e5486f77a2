"""The embedded stack's broker: kombu's in-memory transport, woken by each message instead of
polling its queues (the in-memory transport sleeps ``polling_interval`` between empty polls: a
short interval burns CPU while a run waits, a long one adds it to every hop).

Registered with kombu as ``autoexec-memory://``.
"""

from __future__ import annotations

import threading
from queue import Empty
from time import monotonic
from typing import Any

from kombu import Connection
from kombu.transport import TRANSPORT_ALIASES, memory

SCHEME = "autoexec-memory"
# Longest wait between two looks at the queues: a safety net, never the wake-up path.
IDLE_WAIT_SECONDS = 5.0


class _Arrivals:
    """How many messages were put so far; a waiter sleeps until the count moves."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._count = 0

    @property
    def count(self) -> int:
        return self._count

    def note(self) -> None:
        with self._changed:
            self._count += 1
            self._changed.notify_all()

    def wait_past(self, seen: int, timeout: float) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._count != seen, timeout)


ARRIVALS = _Arrivals()


class Channel(memory.Channel):
    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        super()._put(queue, message, **kwargs)
        ARRIVALS.note()

    def _put_fanout(
        self, exchange: str, message: dict[str, Any], routing_key: str | None = None, **kwargs: Any
    ) -> None:
        super()._put_fanout(exchange, message, routing_key, **kwargs)
        ARRIVALS.note()


class Transport(memory.Transport):
    Channel = Channel
    driver_type = "memory"
    driver_name = SCHEME

    def drain_events(
        self, connection: Connection, timeout: float | None = None, **kwargs: Any
    ) -> None:
        started = monotonic()
        assert self.cycle is not None  # set when the transport is made
        while True:
            seen = ARRIVALS.count
            try:
                self.cycle.get(self._deliver, timeout=timeout)
                return
            except Empty:
                left = IDLE_WAIT_SECONDS if timeout is None else timeout - (monotonic() - started)
                if left <= 0:
                    raise TimeoutError() from None
                ARRIVALS.wait_past(seen, min(left, IDLE_WAIT_SECONDS))


TRANSPORT_ALIASES.setdefault(SCHEME, f"{__name__}:Transport")
