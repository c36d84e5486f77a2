"""``api.subscribe``: an execution's state read from the database, then its live events.

The channel is subscribed to before the snapshot is read, so no change falls between the two;
what both carry is yielded once (``autoexec.observability.live.Tracker``). Whenever events
may have been missed (the connection to Redis dropped, an output came after a gap, or nothing
arrived for ``IDLE_SECONDS``, say because Redis is down) the snapshot is read again and what it
has new is yielded: the stream goes on from the database alone until Redis is back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Generator, Iterator
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from autoexec.coordination import CoordinationError, Coordinator, Keys, PubSub
from autoexec.engine.context import Engine
from autoexec.observability.events import GRAPH_EVENT
from autoexec.observability.live import (
    Event,
    GraphEvent,
    NodeState,
    Output,
    Snapshot,
    Tracker,
    graph_from_wire,
)
from autoexec.statuses import TERMINAL
from autoexec.store import executions as repo

log = logging.getLogger(__name__)

IDLE_SECONDS = 1.0
RESYNC = object()  # what ``Channel.receive`` returns when events may have been missed


class Channel:
    """One pub/sub subscription that notices when it was (or is) cut."""

    def __init__(self, coordinator: Coordinator, name: str) -> None:
        self.coordinator, self.name = coordinator, name
        self.pubsub: PubSub | None = None
        self.reconnected = False

    def open(self) -> bool:
        """Subscribe (again); False if Redis does not answer."""
        self.close()
        try:
            self.pubsub = self.coordinator.subscribe(self.name)
            # The client re-subscribes by itself after a reconnect, silently: note that it did.
            self.pubsub.on_reconnect(self._on_reconnect)
        except CoordinationError as exc:
            log.warning("cannot subscribe to %s: %s", self.name, exc)
            self.close()
            return False
        return True

    def _on_reconnect(self) -> None:
        self.reconnected = True

    def receive(self, wait: float) -> dict[str, Any] | object | None:
        """The next event, None if none came within ``wait``, or ``RESYNC``."""
        if self.pubsub is None:
            if not self.open():
                time.sleep(wait)
            return RESYNC
        try:
            message = self.pubsub.get_message(timeout=wait)
        except CoordinationError as exc:
            log.warning("lost the subscription to %s: %s", self.name, exc)
            self.close()
            return RESYNC
        if self.reconnected:
            self.reconnected = False
            return RESYNC
        return None if message is None else json.loads(message)

    def close(self) -> None:
        if self.pubsub is not None:
            with contextlib.suppress(CoordinationError):
                self.pubsub.close()
            self.pubsub = None


def read_snapshot(engine: Engine, graph_exec_id: str, user_id: str) -> Snapshot:
    """The execution's status and each node execution's status and outputs, at one moment;
    ``NotFoundError`` if it is not one of ``user_id``'s."""
    with engine.db.snapshot() as session:
        execution = repo.get_graph_execution(session, graph_exec_id, user_id)
        rows = repo.node_executions(session, graph_exec_id)
        stored = repo.outputs_of_graph_execution(session, graph_exec_id)
        graph = GraphEvent(graph_exec_id, user_id, execution.status, execution.error, replayed=True)
    nodes = {
        row.id: NodeState(
            graph_exec_id, user_id, row.id, row.node_id, row.block_id, row.status, row.error,
            _unix(row.started_at), _unix(row.ended_at),
        )
        for row in rows
    }  # fmt: skip
    for out in sorted(stored, key=lambda out: (out.node_exec_id, out.seq)):
        nodes[out.node_exec_id].outputs.append(Output(out.name, out.value, out.seq))
    return Snapshot(graph, list(nodes.values()))


def _unix(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


class Subscription:
    """An iterator of one execution's events, from its current state to its final event."""

    def __init__(
        self, engine: Engine, graph_exec_id: str, user_id: str, timeout: float | None = None
    ) -> None:
        self.engine, self.graph_exec_id, self.user_id = engine, graph_exec_id, user_id
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.tracker = Tracker()
        self.channel = Channel(engine.coordinator, Keys.events(graph_exec_id))
        self.channel.open()
        try:
            first = self._snapshot()
        except BaseException:
            self.channel.close()
            raise
        self._events = self._stream(first)

    def __iter__(self) -> Subscription:
        return self

    def __next__(self) -> Event:
        return next(self._events)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._events.close()
        self.channel.close()

    def _snapshot(self) -> Snapshot:
        return read_snapshot(self.engine, self.graph_exec_id, self.user_id)

    def _stream(self, first: Snapshot) -> Generator[Event]:
        try:
            yield from self.tracker.merge(first)
            while not self.tracker.ended:
                yield from self._next_events()
        finally:
            self.channel.close()

    def _next_events(self) -> Iterator[Event]:
        message = self.channel.receive(self._wait())
        if message is RESYNC or message is None:  # nothing for a while: make sure from the db
            yield from self.tracker.merge(self._snapshot())
            return
        assert isinstance(message, dict)
        if _is_final_graph_event(message):
            yield from self._final(message)
            return
        event = self.tracker.apply(message)
        if self.tracker.stale:
            yield from self.tracker.merge(self._snapshot())
        elif event is not None:
            yield event

    def _final(self, message: dict[str, Any]) -> Iterator[Event]:
        """Events of other processes may still be on their way
        (``autoexec.observability.events``) when the final one comes: the database has them all by
        then, and the final event, as it was received, comes last."""
        final = graph_from_wire(message)
        for merged in self.tracker.merge(self._snapshot()):
            same = isinstance(merged, GraphEvent) and merged.status is final.status
            yield final if same else merged
        if not self.tracker.ended:  # the snapshot does not show the end yet: never seen
            applied = self.tracker.apply(message)
            if applied is not None:
                yield applied

    def _wait(self) -> float:
        if self.deadline is None:
            return IDLE_SECONDS
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"graph execution {self.graph_exec_id} has not ended")
        return min(left, IDLE_SECONDS)


def _is_final_graph_event(message: dict[str, Any]) -> bool:
    return message.get("type") == GRAPH_EVENT and message.get("status") in _FINAL


_FINAL = frozenset(status.value for status in TERMINAL)


def user_events(engine: Engine, user_id: str) -> Iterator[Event]:
    """Live events of all of ``user_id``'s executions, as they come (no replay, no end); the
    channel is subscribed to before this returns."""
    channel = Channel(engine.coordinator, Keys.user_events(user_id))
    channel.open()
    return _user_stream(channel)


def _user_stream(channel: Channel, tracker: Tracker | None = None) -> Iterator[Event]:
    tracker = tracker or Tracker(check_gaps=False)
    # Each worker process sends its own events, so a node's last ones may come after its
    # run's final event: they are passed on, and what they taught the tracker is dropped.
    ended: dict[str, None] = {}
    try:
        while True:
            message = channel.receive(IDLE_SECONDS)
            if not isinstance(message, dict):
                continue
            event = tracker.apply(message)
            if event is None:
                continue
            yield event
            if isinstance(event, GraphEvent) and event.is_final:
                _remember(ended, event.graph_exec_id)
            if event.graph_exec_id in ended:
                tracker.forget(event.graph_exec_id)
    finally:
        channel.close()


ENDED_RUNS_REMEMBERED = 1024


def _remember(ended: dict[str, None], graph_exec_id: str) -> None:
    ended[graph_exec_id] = None
    if len(ended) > ENDED_RUNS_REMEMBERED:
        del ended[next(iter(ended))]
