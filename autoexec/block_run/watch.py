"""The stop watch of a running block: on a timer thread, it asks now and then whether the run
must stop, and interrupts the block's clock when so. What it asks is the caller's hook."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from autoexec.timeouts import Clock

# A running block's watch reads its run's stop flag (Redis) this often, and the database (the
# truth, also when a flag was lost) every DATABASE_EVERY watches, or at once when the flag
# cannot be read. Redis down costs a watch one short try, then nothing for a while (the
# coordinator's stop path skips it), so a stop is found within 2 s either way (SPEC §7).
WATCH_INTERVAL_SECONDS = 0.5
DATABASE_EVERY = 4

# Given the number of this watch (from 1): the stop to interrupt the block with, or None.
StopFinder = Callable[[int], Exception | None]


class Scheduler(Protocol):
    def schedule(self, callback: Callable[[], None], delay: float) -> None: ...


def database_due(watches: int) -> bool:
    """Whether watch number ``watches`` also reads the database."""
    return watches % DATABASE_EVERY == 0


class StopWatch:
    """Every ``WATCH_INTERVAL_SECONDS`` on the process's ``timer`` thread until ``finish``:
    ``stop_found`` is asked, and a stop it returns interrupts ``clock`` (at once if the block
    is blocked in a main thread, else at its next yield or poll). A failing check is logged,
    and the watch goes on."""

    def __init__(
        self,
        timer: Scheduler,
        clock: Clock,
        logger: logging.LoggerAdapter[logging.Logger],
        stop_found: StopFinder,
    ) -> None:
        self.timer, self.clock, self.logger = timer, clock, logger
        self.stop_found = stop_found
        self.finished = False
        self.watches = 0

    def start(self) -> None:
        self.timer.schedule(self._watch, WATCH_INTERVAL_SECONDS)

    def finish(self) -> None:
        self.finished = True

    def _watch(self) -> None:
        if self.finished:
            return
        self.watches += 1
        try:
            stop = self.stop_found(self.watches)
        except Exception:
            self.logger.warning("could not check whether to stop", exc_info=True)
            stop = None
        if stop is not None:
            self.clock.interrupt(stop)
        else:
            self.start()
