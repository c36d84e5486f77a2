"""A user's live stream (``api.subscribe_user``) passes on a node's events that come after
its run's final event (another worker process sent them later) and keeps nothing of an ended
run, however long the stream lives."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

from autoexec.observability.events import GRAPH_EVENT, NODE_EVENT
from autoexec.observability.live import Event, GraphEvent, NodeEvent, Tracker
from autoexec.observability.subscription import Channel, _user_stream
from autoexec.statuses import ExecutionStatus

S = ExecutionStatus


class Wire:
    """A channel that hands out the given messages, then nothing."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages

    def receive(self, wait: float) -> dict[str, Any] | None:
        return self.messages.pop(0) if self.messages else None

    def close(self) -> None:
        pass


def run_event(run: str, status: S) -> dict[str, Any]:
    return {"type": GRAPH_EVENT, "graph_exec_id": run, "user_id": "u", "status": status.value}


def node_event(run: str, node_exec_id: int, status: S) -> dict[str, Any]:
    return {
        "type": NODE_EVENT,
        "graph_exec_id": run,
        "user_id": "u",
        "status": status.value,
        "node_exec_id": node_exec_id,
        "node_id": f"n{node_exec_id}",
        "block_id": "calculator",
        "error": None,
    }


def take(stream: Iterator[Event], count: int) -> list[tuple[str, str, S]]:
    taken = []
    for _ in range(count):
        event = next(stream)
        kind = "node" if isinstance(event, NodeEvent) else "run"
        assert isinstance(event, NodeEvent | GraphEvent)
        taken.append((kind, event.graph_exec_id, event.status))
    return taken


def test_a_node_event_after_its_runs_end_is_passed_on_and_not_kept() -> None:
    messages = [
        run_event("a", S.RUNNING),
        node_event("a", 1, S.RUNNING),
        node_event("a", 2, S.RUNNING),
        run_event("a", S.COMPLETED),
        node_event("a", 2, S.COMPLETED),  # sent late by the other worker process
        run_event("b", S.RUNNING),
        node_event("b", 3, S.RUNNING),
    ]
    tracker = Tracker(check_gaps=False)
    stream = _user_stream(cast(Channel, Wire(messages)), tracker)

    assert take(stream, 7) == [
        ("run", "a", S.RUNNING),
        ("node", "a", S.RUNNING),
        ("node", "a", S.RUNNING),
        ("run", "a", S.COMPLETED),
        ("node", "a", S.COMPLETED),
        ("run", "b", S.RUNNING),
        ("node", "b", S.RUNNING),
    ]
    assert set(tracker.graphs) == {"b"}
    assert set(tracker.nodes) == {3}
