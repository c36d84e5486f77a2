"""Typed live events, and the state a subscriber rebuilds from a database snapshot and the
wire events (autoexec.observability.events) that follow it, each change yielded once.

Per node execution, a change is new when it moves the status forward or brings an output with
a higher ``seq``; anything the state already holds (because the snapshot read after the
subscription included it) is dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from autoexec.observability.events import GRAPH_EVENT
from autoexec.statuses import SUSPENDED, TERMINAL, ExecutionStatus

S = ExecutionStatus
# How far along a status is; a change to a status no further along is not new.
_PROGRESS = {
    S.INCOMPLETE: 0, S.QUEUED: 1, S.RUNNING: 2, S.REVIEW: 3, S.WAITING: 3,
    S.COMPLETED: 4, S.FAILED: 4, S.TERMINATED: 4,
}  # fmt: skip


def progress(status: ExecutionStatus) -> int:
    return _PROGRESS[status]


def _is_news(known: ExecutionStatus, status: ExecutionStatus) -> bool:
    """A run's status is new if further along, or if it resumed (a suspended run goes back to
    RUNNING when what it waited for is done)."""
    resumed = known in SUSPENDED and status is S.RUNNING
    return resumed or progress(status) > progress(known)


@dataclass(frozen=True)
class Output:
    """One output of a node execution; ``cut`` if its value was cut to the event size limit
    (the value is then the start of its JSON text)."""

    pin: str
    value: Any
    seq: int
    cut: bool = False


@dataclass(frozen=True)
class GraphEvent:
    graph_exec_id: str
    user_id: str
    status: ExecutionStatus
    error: str | None = None
    at: float | None = None  # when it was published (Unix time); None when read from the database
    replayed: bool = False  # read from the database, not received live

    @property
    def is_final(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class NodeEvent:
    """A node execution's change: a new status, or new outputs (``new_outputs``: one for a live
    output, every one so far when replayed from the database)."""

    graph_exec_id: str
    user_id: str
    node_exec_id: int
    node_id: str
    block_id: str
    status: ExecutionStatus
    new_outputs: tuple[Output, ...] = ()
    error: str | None = None
    at: float | None = None
    started_at: float | None = None  # Unix times, as far as known
    ended_at: float | None = None
    replayed: bool = False
    _history: list[Output] = field(default_factory=list, repr=False, compare=False)
    _count: int = field(default=0, repr=False, compare=False)

    @property
    def outputs(self) -> dict[str, list[Any]]:
        """The node execution's outputs so far (up to this event), by pin."""
        by_pin: dict[str, list[Any]] = {}
        for output in self._history[: self._count]:
            by_pin.setdefault(output.pin, []).append(output.value)
        return by_pin


Event = GraphEvent | NodeEvent


@dataclass
class NodeState:
    graph_exec_id: str
    user_id: str
    node_exec_id: int
    node_id: str
    block_id: str
    status: ExecutionStatus
    error: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    outputs: list[Output] = field(default_factory=list)

    @property
    def last_seq(self) -> int:
        return self.outputs[-1].seq if self.outputs else -1

    def event(self, new: tuple[Output, ...], at: float | None, replayed: bool) -> NodeEvent:
        return NodeEvent(
            self.graph_exec_id, self.user_id, self.node_exec_id, self.node_id, self.block_id,
            self.status, new, self.error, at, self.started_at, self.ended_at, replayed,
            self.outputs, len(self.outputs),
        )  # fmt: skip

    def move(self, status: ExecutionStatus, error: str | None, at: float | None) -> bool:
        """Take ``status`` if it is further along; True if it was."""
        if progress(status) <= progress(self.status):
            return False
        self.status, self.error = status, error or self.error
        if status is S.RUNNING and self.started_at is None:
            self.started_at = at
        if status in TERMINAL and self.ended_at is None:
            self.ended_at = at
        return True


@dataclass(frozen=True)
class Snapshot:
    """An execution as one database read saw it."""

    graph: GraphEvent
    nodes: list[NodeState]


@dataclass
class Tracker:
    """What a subscriber has yielded so far; turns snapshots and wire events into new events."""

    # False for a user's stream, which has no snapshot to fill a gap from.
    check_gaps: bool = True
    graphs: dict[str, ExecutionStatus] = field(default_factory=dict)
    nodes: dict[int, NodeState] = field(default_factory=dict)
    stale: bool = False  # an output came after a gap: read the snapshot again
    ended: bool = False  # the final graph event was yielded

    def merge(self, snapshot: Snapshot) -> Iterator[Event]:
        """What ``snapshot`` has that was not yielded yet; the final graph event last."""
        self.stale = False
        graph = self._graph(snapshot.graph)
        if graph is not None and not graph.is_final:
            yield graph
        for node in snapshot.nodes:
            event = self._merge_node(node)
            if event is not None:
                yield event
        if graph is not None and graph.is_final:
            self.ended = True
            yield graph

    def _merge_node(self, read: NodeState) -> NodeEvent | None:
        known = self.nodes.get(read.node_exec_id)
        if known is None:
            self.nodes[read.node_exec_id] = read
            return read.event(tuple(read.outputs), None, replayed=True)
        new = tuple(o for o in read.outputs if o.seq > known.last_seq)
        known.outputs.extend(new)
        moved = known.move(read.status, read.error, None)
        known.started_at = known.started_at or read.started_at
        known.ended_at = known.ended_at or read.ended_at
        return known.event(new, None, replayed=True) if moved or new else None

    def apply(self, wire: dict[str, Any]) -> Event | None:
        """The typed event of a wire event, or None if it brings nothing new."""
        if wire["type"] == GRAPH_EVENT:
            event = self._graph(graph_from_wire(wire))
            self.ended = self.ended or (event is not None and event.is_final)
            return event
        return self._node(wire)

    def _graph(self, event: GraphEvent) -> GraphEvent | None:
        known = self.graphs.get(event.graph_exec_id)
        if known is not None and not _is_news(known, event.status):
            return None
        self.graphs[event.graph_exec_id] = event.status
        return event

    def _node(self, wire: dict[str, Any]) -> NodeEvent | None:
        at = wire.get("at")
        state = self.nodes.get(wire["node_exec_id"])
        if state is None:
            state = self.nodes[wire["node_exec_id"]] = node_from_wire(wire)
            fresh = True
        else:
            fresh = state.move(S(wire["status"]), wire.get("error"), at)
        output = wire.get("output")
        if output is None:
            return state.event((), at, replayed=False) if fresh else None
        return self._output(state, Output(**output), at)

    def _output(self, state: NodeState, output: Output, at: float | None) -> NodeEvent | None:
        if output.seq <= state.last_seq:
            return None
        if self.check_gaps and output.seq > state.last_seq + 1:
            self.stale = True  # an event was lost: the snapshot will have it
            return None
        state.outputs.append(output)
        return state.event((output,), at, replayed=False)

    def forget(self, graph_exec_id: str) -> None:
        """Drop what is known of an ended execution (a user's stream goes on)."""
        self.graphs.pop(graph_exec_id, None)
        for node_exec_id in [n for n, s in self.nodes.items() if s.graph_exec_id == graph_exec_id]:
            del self.nodes[node_exec_id]


def graph_from_wire(wire: dict[str, Any]) -> GraphEvent:
    return GraphEvent(
        wire["graph_exec_id"], wire["user_id"], S(wire["status"]), wire.get("error"), wire.get("at")
    )


def node_from_wire(wire: dict[str, Any]) -> NodeState:
    status, at = S(wire["status"]), wire.get("at")
    return NodeState(
        wire["graph_exec_id"], wire["user_id"], wire["node_exec_id"], wire["node_id"],
        wire["block_id"], status, wire.get("error"),
        started_at=at if status is S.RUNNING else None,
        ended_at=at if status in TERMINAL else None,
    )  # fmt: skip
