"""Helpers for the live event tests: runs held until a subscriber is ready, and subscribers
that collect their events on a thread."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import Any

from autoexec import api
from autoexec.engine.context import Engine
from autoexec.observability.live import Event, NodeEvent


@dataclass
class HeldDispatcher:
    """Keeps the run messages it is given; ``release`` sends them."""

    engine: Engine
    held: list[str] = field(default_factory=list)

    def run_graph(self, graph_exec_id: str) -> None:
        self.held.append(graph_exec_id)

    def release(self) -> None:
        for graph_exec_id in self.held:
            self.engine.dispatcher.run_graph(graph_exec_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine.dispatcher, name)


def held_execution(engine: Engine, definition: dict[str, Any], owner: str) -> tuple[str, Any]:
    """A QUEUED execution whose run message is held; (its id, the dispatcher holding it)."""
    held = HeldDispatcher(engine)
    graph_id, _ = api.save_graph(definition, owner, engine=engine)
    graph_exec_id = api.execute_graph(graph_id, owner, {}, engine=replace(engine, dispatcher=held))
    return graph_exec_id, held


class Collector(threading.Thread):
    """Collects an execution's events (``api.subscribe``) until its final event."""

    def __init__(self, engine: Engine, graph_exec_id: str, owner: str) -> None:
        super().__init__(daemon=True)
        self.subscription = api.subscribe(graph_exec_id, owner, engine=engine, timeout=120)
        self.events: list[Event] = []
        self.changed = threading.Condition()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.subscription as events:
                for event in events:
                    self._add(event)
        except BaseException as exc:  # the test reports it
            self.error = exc
        with self.changed:
            self.changed.notify_all()

    def _add(self, event: Event) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def wait_for_outputs(self, node_id: str, count: int, timeout: float = 60) -> None:
        """Until the collected events hold ``count`` outputs of ``node_id``."""
        with self.changed:
            seen = self.changed.wait_for(
                lambda: (
                    self.error is not None
                    or not self.is_alive()
                    or outputs_seen(self.events, node_id) >= count
                ),
                timeout,
            )
        assert seen and self.error is None, self.error

    def finish(self, timeout: float = 120) -> list[Event]:
        self.join(timeout)
        assert not self.is_alive(), "the subscription did not end"
        assert self.error is None, self.error
        return self.events


def outputs_seen(events: list[Event], node_id: str) -> int:
    return sum(
        len(e.new_outputs) for e in events if isinstance(e, NodeEvent) and e.node_id == node_id
    )
