"""A node execution's yields on their way to the database, in batches.

Yields that come quickly are recorded (and delivered) together: a batch is flushed when it
holds ``MAX_BATCH`` outputs, when the node ends (in the end's own transaction), or once its
first output has waited ``WINDOW_SECONDS``. That last flush is done by a timer thread, so an
output never waits in the buffer while the block is busy or blocked producing the next one.
A flush and the block's next yield never interleave: both hold the buffer's lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from autoexec.engine import inline
from autoexec.engine.cancellation import Stop
from autoexec.engine.context import Engine
from autoexec.engine.inline import Flushed, NodeAttempt, Yielded
from autoexec.store.transaction import Transaction

# Small, because a batch is delivered under the run's row lock, which every node end of the
# run waits for: 16 measured faster than 64 on stream_10k.
MAX_BATCH = 16
WINDOW_SECONDS = 0.01

log = logging.getLogger(__name__)


class OutputBuffer:
    """The outputs one node execution yielded and did not record yet."""

    def __init__(self, engine: Engine, ref: NodeAttempt) -> None:
        self.engine, self.ref = engine, ref
        self.lock = threading.Lock()
        self.items: list[Yielded] = []
        self.closed = False
        self.stop: Stop | None = None  # a run limit a flush found: the node must stop
        self.superseded = False  # a flush found another attempt owning the node execution
        self.halted = False  # a flush found the run stopped (cancelled or ended)
        # A flush failed, maybe after its commit queued successors it did not send: the
        # node's end wakes an orchestrator step to send them.
        self.step_owed = False
        # Every output recorded so far was delivered by its own flush: the next flush can
        # deliver its outputs from memory. Only a first attempt starts so (an earlier
        # attempt may have left outputs undelivered).
        self.all_delivered = ref.attempt == 1

    def add(self, item: Yielded) -> None:
        with self.lock:
            self.items.append(item)
            if len(self.items) >= MAX_BATCH and self._may_flush():
                self._flush()
            elif len(self.items) == 1:
                self.engine.timer.schedule(self.flush_due, WINDOW_SECONDS)

    def flush_due(self) -> None:
        """Called by the timer: flush what has waited long enough."""
        with self.lock:
            if self.closed or not self.items or not self._may_flush():
                return
            try:
                self._flush()
            except Exception:
                log.warning("could not record the outputs of %s", self.ref, exc_info=True)
                self.engine.timer.schedule(
                    self.flush_due, WINDOW_SECONDS
                )  # the node's flush says why

    def close(self, end: inline.End) -> Flushed:
        """Record what is left with the node's end, in one transaction."""
        with self.lock:
            self.closed = True
            flushed = self._flush(end)
            flushed.needs_step = flushed.needs_step or self.step_owed
            return flushed

    def closing(self, end: inline.End) -> Callable[[Transaction], bool]:
        """``end``, then writing what is left if it applied (not delivered: the run is being
        stopped)."""
        with self.lock:
            self.closed = True
            left = list(self.items)

        def record_all(session: Transaction) -> bool:
            ended = end(session, False)
            if ended:
                inline.append_outputs(session, self.ref, left)
            return ended

        return record_all

    def _may_flush(self) -> bool:
        """Nothing more is delivered once a flush found the run past a limit (the node's end
        records the rest) or the node execution taken over (the rest is not this attempt's)."""
        return self.stop is None and not self.superseded and not self.halted

    def _flush(self, end: inline.End | None = None) -> Flushed:
        try:
            return self._record(end)
        except Exception:
            # The commit may have happened: its outputs are stored (a replay is ignored)
            # and its successors may be unsent.
            self.step_owed = True
            self.all_delivered = False
            raise

    def _record(self, end: inline.End | None) -> Flushed:
        outputs = list(self.items)
        flushed = inline.record(self.engine, self.ref, outputs, end, self.all_delivered)
        del self.items[: len(outputs)]  # only once recorded: a failed flush loses nothing
        self.superseded = flushed.superseded
        self.halted = self.halted or flushed.halted
        if flushed.needs_step or flushed.stop is not None or flushed.superseded:
            self.all_delivered = False
        if flushed.stop is not None and end is None:
            self.stop = flushed.stop
        elif flushed.needs_step and end is None:
            self.engine.wake(self.ref.graph_exec_id)
        return flushed
