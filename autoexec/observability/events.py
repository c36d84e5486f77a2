"""Live events (SPEC §11): every graph and node execution change, published as JSON on Redis
pub/sub once committed, on the channel of its graph execution and on the channel of its user.

An event is what changed, never a whole state: a status, or one new output whose value is cut
to ``AUTOEXEC_EVENT_MAX_VALUE_BYTES``. ``api.subscribe`` rebuilds the state from the database
and these events. Publishing is best effort: if Redis fails, events are dropped for a few
seconds and the run goes on at its normal pace.

Events are handed, once committed, to one background thread per process (``EventSender``,
owned by the process's runtime),
which publishes them in order, many to a pipeline: a node task sends its successors without
waiting on Redis. So events of one process keep their order, while those of two processes
(a node's end, its successor's start) may arrive in either order; ``api.subscribe`` reads the
database once more when the final event comes, so it misses none of them.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from autoexec.coordination import Keys
from autoexec.hooks import GraphExecutionChange, Hook, NodeExecutionChange, NodeOutput, NodeRef
from autoexec.statuses import ExecutionStatus

log = logging.getLogger(__name__)

GRAPH_EVENT = "graph_execution"
NODE_EVENT = "node_execution"
PAUSE_AFTER_FAILURE_SECONDS = 5.0
# At most this many committed transactions' events wait for the sender; past it they are
# dropped (a subscriber reads them from the database) rather than holding a run back.
MAX_WAITING_TRANSACTIONS = 10_000
EVENTS_PER_PIPELINE = 64
FLUSH_AT_EXIT_SECONDS = 2.0


def cut_value(value: Any, max_bytes: int) -> tuple[Any, bool]:
    """``value`` if its JSON fits in ``max_bytes``, else the start of its JSON text (a
    string); and whether it was cut."""
    text = json.dumps(value, default=str, ensure_ascii=False)
    encoded = text.encode()
    if len(encoded) <= max_bytes:
        return value, False
    return encoded[:max_bytes].decode(errors="ignore"), True


def graph_event(change: GraphExecutionChange) -> dict[str, Any]:
    return {
        "type": GRAPH_EVENT,
        "graph_exec_id": change.graph_exec_id,
        "user_id": change.user_id,
        "status": change.status.value,
        "error": change.error,
        "at": time.time(),
    }


def node_event(node: NodeRef, status: ExecutionStatus, error: str | None = None) -> dict[str, Any]:
    return {
        "type": NODE_EVENT,
        "graph_exec_id": node.graph_exec_id,
        "user_id": node.user_id,
        "status": status.value,
        "node_exec_id": node.node_exec_id,
        "node_id": node.node_id,
        "block_id": node.block_id,
        "error": error,
        "at": time.time(),
    }


def output_event(output: NodeOutput, max_bytes: int) -> dict[str, Any]:
    """A node's new output; a node yields while RUNNING (its status in the event)."""
    value, cut = cut_value(output.value, max_bytes)
    event = node_event(output.node, ExecutionStatus.RUNNING)
    event["output"] = {"pin": output.name, "value": value, "seq": output.seq, "cut": cut}
    return event


class Breaker:
    """After a failure, says "skip" for ``pause`` seconds; logs once per burst of failures."""

    def __init__(self, pause: float = PAUSE_AFTER_FAILURE_SECONDS) -> None:
        self.pause = pause
        self.open_until = 0.0
        self.failing = False

    def allows(self) -> bool:
        return time.monotonic() >= self.open_until

    def failed(self, exc: Exception) -> None:
        self.open_until = time.monotonic() + self.pause
        if not self.failing:
            log.warning(
                "could not publish live events (%s: %s); skipping them for %gs at a time "
                "until Redis answers again",
                type(exc).__name__,
                exc,
                self.pause,
            )
        self.failing = True

    def succeeded(self) -> None:
        if self.failing:
            log.info("publishing live events again")
        self.failing = False


Publish = Callable[[list[tuple[str, str]]], None]


class EventSender:
    """One daemon thread of this process publishing committed events, in the order they were
    committed, up to ``EVENTS_PER_PIPELINE`` to a Redis pipeline (``publish``: the
    coordinator's ``publish_all``)."""

    def __init__(self, publish: Publish) -> None:
        self.pid = os.getpid()
        self.publish = publish
        self.waiting: queue.Queue[list[dict[str, Any]]] = queue.Queue(MAX_WAITING_TRANSACTIONS)
        self.breaker = Breaker()
        self.dropping = False
        self.thread = threading.Thread(target=self._loop, name="autoexec-events", daemon=True)
        self.thread.start()

    def send(self, events: list[dict[str, Any]]) -> None:
        try:
            self.waiting.put_nowait(events)
        except queue.Full:
            if not self.dropping:
                log.warning(
                    "live events are published slower than they come: dropping some "
                    "(subscribers read them from the database)"
                )
            self.dropping = True
        else:
            self.dropping = False

    def flush(self, timeout: float) -> bool:
        """Wait until every event handed over so far was published (or given up on); False
        if that took longer than ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self.waiting.all_tasks_done:
            while self.waiting.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.waiting.all_tasks_done.wait(left)
        return True

    def _loop(self) -> None:
        while True:
            events = self.waiting.get()
            taken = 1
            while len(events) < EVENTS_PER_PIPELINE:
                try:
                    events = events + self.waiting.get_nowait()
                except queue.Empty:
                    break
                taken += 1
            try:
                self._publish(events)
            finally:
                for _ in range(taken):
                    self.waiting.task_done()

    def _publish(self, events: list[dict[str, Any]]) -> None:
        if not self.breaker.allows():
            return
        try:
            self.publish(messages(events))
        except Exception as exc:  # any failure: the run must not notice
            self.breaker.failed(exc)
        else:
            self.breaker.succeeded()


class EventPublisher(Hook):
    """The built-in hook that hands each committed transaction's events to ``send`` (the
    runtime's sender)."""

    def __init__(self, send: Callable[[list[dict[str, Any]]], None], max_value_bytes: int) -> None:
        self.send, self.max_value_bytes = send, max_value_bytes
        self._local = threading.local()  # hooks of concurrent transactions share the instance

    @property
    def _pending(self) -> list[dict[str, Any]]:
        pending: list[dict[str, Any]] | None = getattr(self._local, "pending", None)
        if pending is None:
            pending = self._local.pending = []
        return pending

    def execution_queued(self, change: GraphExecutionChange) -> None:
        self._pending.append(graph_event(change))

    execution_started = execution_ended = execution_suspended = execution_queued

    def node_queued(self, change: NodeExecutionChange) -> None:
        self._pending.append(node_event(change.node, change.status, change.error))

    node_started = node_ended = node_suspended = node_queued

    def node_output(self, output: NodeOutput) -> None:
        self._pending.append(output_event(output, self.max_value_bytes))

    def committed(self) -> None:
        events, self._local.pending = self._pending, []
        if events:
            self.send(events)


def messages(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Each event on its graph execution's channel and on its user's."""
    sent = []
    for event in events:
        text = json.dumps(event, default=str, ensure_ascii=False)
        sent.append((Keys.events(event["graph_exec_id"]), text))
        sent.append((Keys.user_events(event["user_id"]), text))
    return sent
