"""The sequential reference interpreter: SPEC §3 over memory, one node at a time.

It applies the same rules (``dataflow``) and the same block runner (``node_runner``) as the
distributed engine, without Celery, Redis or a database. Tests use it as the oracle; the CLI uses
it for ``autoexec run --dry-run``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from autoexec.blocks.base import ERROR_PIN, AwaitReview, RunContext, Suspend
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
from autoexec.graph import Graph
from autoexec.node_runner import error_message, iterate_block
from autoexec.statuses import ExecutionStatus

S = ExecutionStatus
log = logging.getLogger(__name__)


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


def _resumed(suspension: Suspend, decide: ReviewDecider) -> tuple[str, Any]:
    """What a suspended node yields when the reference resumes it at once."""
    if isinstance(suspension, AwaitReview):
        return decide(suspension)
    raise TypeError(f"the reference cannot resume {type(suspension).__name__}")


class NodeRunLimitError(RuntimeError):
    """The graph ran more node executions than the reference interpreter allows."""


def run_reference(
    graph: Graph,
    blocks: BlockLookup,
    inputs: dict[str, Any] | None = None,
    nodes_input_masks: dict[str, dict[str, Any]] | None = None,
    nodes_to_skip: list[str] | None = None,
    max_node_runs: int = 10_000,
    review: ReviewDecider | None = None,
) -> ReferenceResult:
    """Run ``graph`` to the end in this thread and report what happened; a human review is
    decided at once by ``review`` (default: approved as it is)."""
    decide = review or approve_as_is
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
        ready.extend(_run_node(spec, store, store.executions[ready.popleft()], decide))
        ready.extend(deliver_failures(spec, store))
    return _result(graph, store)


def _run_node(
    spec: RunSpec, store: MemoryStore, execution: MemoryExecution, decide: ReviewDecider
) -> list[int]:
    node = spec.graph.node(execution.node_id)
    execution.status = S.RUNNING
    newly_ready: list[int] = []
    try:
        for item in iterate_block(
            spec.block_of(node), execution.inputs or {}, _ctx(spec, execution)
        ):
            pin, value = _resumed(item, decide) if isinstance(item, Suspend) else item
            execution.outputs.append((pin, value))
            newly_ready += deliver(spec, store, node.id, pin, value)
    except Exception as exc:
        execution.status, execution.error = S.FAILED, error_message(exc)
        execution.outputs.append((ERROR_PIN, execution.error))
        return newly_ready + deliver(spec, store, node.id, ERROR_PIN, execution.error)
    execution.status = S.COMPLETED
    return newly_ready


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
