"""The engine's timer thread: what is due later runs there, not in a node's own thread."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Timer:
    """One daemon thread per engine (so per process: a forked child builds its own runtime and
    engine) calling what is due: buffers' ``flush_due``, and the
    stop watches of running nodes."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self.thread: threading.Thread | None = None

    def schedule(self, callback: Callable[[], None], delay: float) -> None:
        with self._cond:
            if self.thread is None:  # started on first use: an engine that runs no node has none
                self.thread = threading.Thread(
                    target=self._loop, name="autoexec-output-timer", daemon=True
                )
                self.thread.start()
            heapq.heappush(self._due, (time.monotonic() + delay, next(self._order), callback))
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            callback = self._next_due()
            try:
                callback()
            except Exception:  # the thread must live on for the other buffers
                log.exception("the output timer could not run %s", callback)

    def _next_due(self) -> Callable[[], None]:
        with self._cond:
            while True:
                if not self._due:
                    self._cond.wait()
                    continue
                wait = self._due[0][0] - time.monotonic()
                if wait <= 0:
                    return heapq.heappop(self._due)[2]
                self._cond.wait(wait)
