"""The sequential reference interpreter: SPEC §3 over memory, one node at a time.

It applies the same rules (``dataflow``) and the same block run (``block_run``) as the
distributed engine, without Celery, Redis or a database. Tests use it as the oracle; the CLI uses
it for ``autoexec run --dry-run``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from autoexec.block_run.failures import error_message
from autoexec.block_run.run import RunningBlock
from autoexec.blocks.base import ERROR_PIN, AwaitChild, AwaitReview, RunContext, Suspend
from autoexec.dataflow import (
    BlockLookup,
    FailedNode,
    RunSpec,
    YieldedOutput,
    deliver,
    final_status,
    graph_outputs,
    start,
    unhandled_failures,
)
from autoexec.engine.suspensions.registry import KINDS, ReferenceNode
from autoexec.graph import Graph
from autoexec.statuses import ExecutionStatus

S = ExecutionStatus
log = logging.getLogger(__name__)
MAX_NODE_RUNS = 10_000


@dataclass
class MemoryExecution:
    id: int
    node_id: str
    status: ExecutionStatus = S.INCOMPLETE
    delivered: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] | None = None
    outputs: list[tuple[str, Any]] = field(default_factory=list)
    error: str | None = None
    not_ready_reason: str = ""


class MemoryStore:
    """A ``DataflowStore`` over dicts, for one graph execution."""

    def __init__(self) -> None:
        self.executions: dict[int, MemoryExecution] = {}
        self.static: dict[str, dict[str, Any]] = {}
        self.undelivered: deque[MemoryExecution] = deque()

    def _incomplete(self, node_id: str, pin: str) -> list[int]:
        return [
            e.id
            for e in self.executions.values()
            if e.node_id == node_id and e.status is S.INCOMPLETE and pin not in e.delivered
        ]

    def earliest_incomplete_lacking(self, node_id: str, pin: str) -> int | None:
        candidates = self._incomplete(node_id, pin)
        return candidates[0] if candidates else None

    def incomplete_lacking(self, node_id: str, pin: str) -> list[int]:
        return self._incomplete(node_id, pin)

    def create_execution(self, node_id: str) -> int:
        exec_id = len(self.executions) + 1
        self.executions[exec_id] = MemoryExecution(exec_id, node_id)
        return exec_id

    def add_input(self, exec_id: int, pin: str, value: Any) -> None:
        self.executions[exec_id].delivered[pin] = value

    def delivered_inputs(self, exec_id: int) -> dict[str, Any]:
        return dict(self.executions[exec_id].delivered)

    def set_static_input(self, node_id: str, pin: str, value: Any) -> None:
        self.static.setdefault(node_id, {})[pin] = value

    def static_inputs(self, node_id: str) -> dict[str, Any]:
        return dict(self.static.get(node_id, {}))

    def mark_queued(self, exec_id: int, node_id: str, inputs: dict[str, Any]) -> None:
        execution = self.executions[exec_id]
        assert execution.node_id == node_id
        execution.status, execution.inputs = S.QUEUED, inputs

    def mark_skipped(self, exec_id: int) -> None:
        self.executions[exec_id].status = S.COMPLETED

    def note_not_ready(self, exec_id: int, reason: str) -> None:
        self.executions[exec_id].not_ready_reason = reason

    def mark_failed(self, exec_id: int, error: str, inputs: dict[str, Any]) -> None:
        execution = self.executions[exec_id]
        execution.status, execution.inputs, execution.error = S.FAILED, inputs, error
        execution.outputs.append((ERROR_PIN, error))
        self.undelivered.append(execution)


def deliver_failures(spec: RunSpec, store: MemoryStore) -> list[int]:
    """Deliver the ``error`` of every execution the ready check failed (which may fail more);
    return the ids that became QUEUED."""
    ready: list[int] = []
    while store.undelivered:
        failed = store.undelivered.popleft()
        ready += deliver(spec, store, failed.node_id, ERROR_PIN, failed.error)
    return ready


@dataclass(frozen=True)
class NodeRecord:
    node_id: str
    status: ExecutionStatus
    inputs: dict[str, Any] | None
    outputs: list[tuple[str, Any]]
    error: str | None


@dataclass(frozen=True)
class ReferenceResult:
    status: ExecutionStatus
    outputs: dict[str, list[Any]]
    node_executions: list[NodeRecord]
    error: str | None = None


# How the reference decides a review: the output the resumed node yields.
ReviewDecider = Callable[[AwaitReview], tuple[str, Any]]


def approve_as_is(review: AwaitReview) -> tuple[str, Any]:
    return "approved_data", review.data


# The graphs an ``agent_executor`` may run, by id (a callable is given the id and version).
ChildGraphs = Mapping[str, Graph] | Callable[[str, int | None], Graph]
MAX_CHILD_DEPTH = 10


class ChildGraphError(RuntimeError):
    """The reference cannot run an ``agent_executor``'s child graph (unknown, or too deep)."""


@dataclass(frozen=True)
class Resumer:
    """What the reference gives a suspension kind to resume a node at once with: the review
    decider, the child graphs and a nested run."""

    blocks: BlockLookup
    decide: ReviewDecider
    children: ChildGraphs | None = None
    depth: int = 0  # of the graph being run: 0 for the top-level one

    def child_outputs(self, child: AwaitChild) -> list[tuple[str, Any]]:
        """Run the child graph inline: each of its outputs, name by name, as the node's."""
        if self.depth + 1 > MAX_CHILD_DEPTH:
            raise ChildGraphError(f"graph {child.graph_id!r}: child graphs nest too deep")
        graph = self._child_graph(child)
        nested = replace(self, depth=self.depth + 1)
        result = _run(graph, child.inputs, None, None, MAX_NODE_RUNS, nested)
        if result.status is not S.COMPLETED:
            raise ChildGraphError(f"child graph {child.graph_id!r} failed: {result.error}")
        return [(name, value) for name, values in result.outputs.items() for value in values]

    def _child_graph(self, child: AwaitChild) -> Graph:
        if self.children is None:
            raise ChildGraphError(
                f"the reference cannot run child graph {child.graph_id!r}: give it ``children``"
            )
        if callable(self.children):
            return self.children(child.graph_id, child.graph_version)
        if child.graph_id in self.children:
            return self.children[child.graph_id]
        named = [graph for graph in self.children.values() if graph.name == child.graph_id]
        if len(named) > 1:
            raise ChildGraphError(f"{len(named)} child graphs are named {child.graph_id!r}")
        if not named:
            raise ChildGraphError(f"child graph {child.graph_id!r} not found")
        return named[0]


class NodeRunLimitError(RuntimeError):
    """The graph ran more node executions than the reference interpreter allows."""


def run_reference(
    graph: Graph,
    blocks: BlockLookup,
    inputs: dict[str, Any] | None = None,
    nodes_input_masks: dict[str, dict[str, Any]] | None = None,
    nodes_to_skip: list[str] | None = None,
    max_node_runs: int = MAX_NODE_RUNS,
    review: ReviewDecider | None = None,
    children: ChildGraphs | None = None,
) -> ReferenceResult:
    """Run ``graph`` to the end in this thread and report what happened; a human review is
    decided at once by ``review`` (default: approved as it is); an ``agent_executor`` runs
    its child graph, taken from ``children``, inline; a fan-out node runs its block once per
    element (SPEC §8.3)."""
    resumer = Resumer(blocks, review or approve_as_is, children)
    return _run(graph, inputs, nodes_input_masks, nodes_to_skip, max_node_runs, resumer)


def _run(
    graph: Graph,
    inputs: dict[str, Any] | None,
    nodes_input_masks: dict[str, dict[str, Any]] | None,
    nodes_to_skip: list[str] | None,
    max_node_runs: int,
    resumer: Resumer,
) -> ReferenceResult:
    blocks = resumer.blocks
    spec = RunSpec(
        graph, blocks, inputs or {}, nodes_input_masks or {}, frozenset(nodes_to_skip or ())
    )
    store = MemoryStore()
    ready = deque(start(spec, store))
    ready.extend(deliver_failures(spec, store))
    runs = 0
    while ready:
        runs += 1
        if runs > max_node_runs:
            raise NodeRunLimitError(f"more than {max_node_runs} node executions; is it a loop?")
        ready.extend(_run_node(spec, store, store.executions[ready.popleft()], resumer))
        ready.extend(deliver_failures(spec, store))
    return _result(graph, store)


def _run_node(
    spec: RunSpec, store: MemoryStore, execution: MemoryExecution, resumer: Resumer
) -> list[int]:
    node = spec.graph.node(execution.node_id)
    execution.status = S.RUNNING
    newly_ready: list[int] = []
    try:
        for pin, value in node_outputs(spec, execution, resumer):
            execution.outputs.append((pin, value))
            newly_ready += deliver(spec, store, node.id, pin, value)
    except Exception as exc:
        execution.status, execution.error = S.FAILED, error_message(exc)
        execution.outputs.append((ERROR_PIN, execution.error))
        return newly_ready + deliver(spec, store, node.id, ERROR_PIN, execution.error)
    execution.status = S.COMPLETED
    return newly_ready


def node_outputs(
    spec: RunSpec, execution: MemoryExecution, resumer: Resumer
) -> Iterator[tuple[str, Any]]:
    """What the node execution yields, in order (a suspension resolved at once); raises what
    it fails with."""
    node = spec.graph.node(execution.node_id)
    block, inputs, ctx = spec.block_of(node), execution.inputs or {}, _ctx(spec, execution)
    launch = KINDS.launch_for(node)
    items = launch(block, inputs, None) if launch else RunningBlock(block, inputs, ctx).outputs()
    for item in items:
        if isinstance(item, Suspend):
            resumed = ReferenceNode(block, dict(inputs), ctx, resumer)
            yield from KINDS.of(item).in_reference(item, resumed)
        else:
            yield item


def _ctx(spec: RunSpec, execution: MemoryExecution) -> RunContext:
    node = spec.graph.node(execution.node_id)
    return RunContext(
        user_id=spec.graph.user_id,
        graph_id=spec.graph.id,
        graph_version=spec.graph.version,
        graph_exec_id="reference",
        node_id=node.id,
        node_exec_id=str(execution.id),
        block_id=node.block_id,
        logger=logging.LoggerAdapter(log, {"node_id": node.id}),
    )


def _result(graph: Graph, store: MemoryStore) -> ReferenceResult:
    executions = sorted(store.executions.values(), key=lambda e: e.id)
    failed = [FailedNode(e.node_id, e.error or "") for e in executions if e.status is S.FAILED]
    unhandled = unhandled_failures(graph, failed)
    outputs = [
        YieldedOutput(e.node_id, graph.node(e.node_id).block_id, name, value, e.inputs or {})
        for e in executions
        for name, value in e.outputs
    ]
    return ReferenceResult(
        status=final_status(graph, failed),
        outputs=graph_outputs(outputs),
        node_executions=[
            NodeRecord(e.node_id, e.status, e.inputs, list(e.outputs), e.error) for e in executions
        ],
        error=unhandled[0].error if unhandled else None,
    )
