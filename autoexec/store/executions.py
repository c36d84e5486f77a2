"""Graph and node executions: rows, inputs, outputs, and the queries the engine needs."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

from sqlalchemy import Insert, Integer, Row, Select, Update, bindparam, exists, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, defer
from sqlalchemy.orm.attributes import set_committed_value

from autoexec.clock import utcnow
from autoexec.dataflow import YieldedOutput, graph_outputs
from autoexec.errors import NotFoundError
from autoexec.graph import GRAPH_OUTPUT_BLOCK, Graph
from autoexec.hooks import GraphExecutionChange, NodeOutput, NodeRef, note
from autoexec.statuses import HOLDING_A_SLOT, TERMINAL, ExecutionStatus
from autoexec.store.statements import bound, run, table
from autoexec.store.tables import (
    GraphExecution,
    GraphVersion,
    NodeExecution,
    NodeExecutionOutput,
)

S = ExecutionStatus
_RUNS = table(GraphExecution)
_OUTPUTS = table(NodeExecutionOutput)
ACTIVE_NODE_STATUSES = (S.QUEUED, S.RUNNING)

# A graph execution as the store loaded it in the caller's transaction. The engine reads its
# fields and hands it back to store functions, which alone change it. It stays the loaded row,
# not a frozen copy: ``count_node_executions`` keeps it in step with its UPDATE, and metering
# and ``run_spec`` take the run as loaded, so a copy would cost reads the hot path avoids.
ExecutionState: TypeAlias = GraphExecution


@dataclass(frozen=True)
class Submission:
    """What a user asked to run."""

    graph: Graph
    user_id: str
    inputs: dict[str, Any]
    nodes_input_masks: dict[str, dict[str, Any]]
    nodes_to_skip: list[str]
    max_run_seconds: float | None = None
    credit_budget: int | None = None
    parent_execution_id: str | None = None
    root_execution_id: str | None = None
    parent_node_exec_id: int | None = None


def create_graph_execution(
    session: Session, submission: Submission, exec_id: str | None = None
) -> GraphExecution:
    row = GraphExecution(
        id=exec_id or str(uuid.uuid4()),
        graph_id=submission.graph.id,
        graph_version=submission.graph.version,
        user_id=submission.user_id,
        status=S.QUEUED,
        inputs=submission.inputs,
        nodes_input_masks=submission.nodes_input_masks,
        nodes_to_skip=submission.nodes_to_skip,
        max_run_seconds=submission.max_run_seconds,
        credit_budget=submission.credit_budget,
        parent_execution_id=submission.parent_execution_id,
        root_execution_id=submission.root_execution_id or submission.parent_execution_id,
        parent_node_exec_id=submission.parent_node_exec_id,
    )
    session.add(row)
    session.flush()
    note(
        session,
        GraphExecutionChange(row.id, row.user_id, row.graph_id, row.graph_version, S.QUEUED),
    )
    return row


def get_graph_execution(
    session: Session, graph_exec_id: str, user_id: str | None = None
) -> GraphExecution:
    """The execution; with ``user_id``, another user's execution is not found."""
    row = session.get(GraphExecution, graph_exec_id)
    if row is None or (user_id is not None and row.user_id != user_id):
        raise NotFoundError(f"graph execution {graph_exec_id!r} not found")
    return row


def execution_exists(session: Session, graph_exec_id: str) -> bool:
    return session.get(GraphExecution, graph_exec_id) is not None


def set_node_execution_count(execution: GraphExecution, count: int) -> None:
    """The count of a run just written, stored with the transaction's commit."""
    execution.node_execution_count = count


def execution_with_fresh_spend(session: Session, graph_exec_id: str) -> GraphExecution:
    """The execution, its ``credits_spent`` read again: charged or refunded just now."""
    execution = get_graph_execution(session, graph_exec_id)
    session.refresh(execution, ["credits_spent"])
    return execution


def owner_and_status(
    session: Session, graph_exec_id: str, user_id: str | None = None
) -> tuple[str, ExecutionStatus]:
    """The execution's owner and status (``get_graph_execution``'s read and check)."""
    execution = get_graph_execution(session, graph_exec_id, user_id)
    return execution.user_id, execution.status


def request_cancel(session: Session, graph_exec_ids: list[str]) -> None:
    """Note a cancel request on each execution not yet asked to cancel."""
    session.execute(
        update(GraphExecution)
        .where(GraphExecution.id.in_(graph_exec_ids))
        .where(GraphExecution.cancel_requested_at.is_(None))
        .values(cancel_requested_at=utcnow())
    )


def live_node_task_ids(session: Session, graph_exec_id: str) -> list[str | None]:
    """The task ids of the run's QUEUED or RUNNING node executions that have one."""
    return list(
        session.scalars(
            select(NodeExecution.celery_task_id).where(
                NodeExecution.graph_exec_id == graph_exec_id,
                NodeExecution.status.in_(ACTIVE_NODE_STATUSES),
                NodeExecution.celery_task_id.is_not(None),
            )
        )
    )


def get_execution_state(session: Session, graph_exec_id: str, lock: bool = False) -> GraphExecution:
    """The execution without its bulky columns (inputs, stats), for per-node and per-step use.

    With ``lock`` the row stays locked until the transaction ends: every transaction that
    changes an execution's dataflow takes it first, so two steps (one of which may hold an
    expired Redis lock) can never deliver the same outputs twice.
    """
    stmt = _execution_state(lock)
    row = session.scalars(stmt, {"p_graph_exec_id": graph_exec_id}).first()
    if row is None:
        raise NotFoundError(f"graph execution {graph_exec_id!r} not found")
    return row


@functools.cache
def _execution_state(lock: bool) -> Select[GraphExecution]:
    stmt = (
        select(GraphExecution)
        .where(GraphExecution.id == bindparam("p_graph_exec_id"))
        .options(defer(GraphExecution.inputs), defer(GraphExecution.stats))
    )
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return stmt


@dataclass(frozen=True)
class ClaimView:
    """What claiming a node execution reads: the node execution and its run's state."""

    node_exec_id: int
    node_id: str
    block_id: str
    status: ExecutionStatus
    attempt: int
    worker_losses: int
    input_data: dict[str, Any] | None
    stats: dict[str, Any] | None
    graph_exec_id: str
    graph_id: str
    graph_version: int
    user_id: str
    run_status: ExecutionStatus
    cancel_requested_at: datetime | None
    max_run_seconds: float | None
    started_at: datetime | None


def claim_view(session: Session, node_exec_id: int) -> ClaimView:
    """The node execution and its graph execution's state, in one query."""
    stmt = (
        select(
            NodeExecution.id,
            NodeExecution.node_id,
            NodeExecution.block_id,
            NodeExecution.status,
            NodeExecution.attempt,
            NodeExecution.worker_losses,
            NodeExecution.input_data,
            NodeExecution.stats,
            GraphExecution.id,
            GraphExecution.graph_id,
            GraphExecution.graph_version,
            GraphExecution.user_id,
            GraphExecution.status,
            GraphExecution.cancel_requested_at,
            GraphExecution.max_run_seconds,
            GraphExecution.started_at,
        )
        .join(GraphExecution, GraphExecution.id == NodeExecution.graph_exec_id)
        .where(NodeExecution.id == node_exec_id)
    )
    row = session.execute(stmt).first()
    if row is None:
        raise NotFoundError(f"node execution {node_exec_id} not found")
    return ClaimView(*row)


def get_node_execution(session: Session, node_exec_id: int) -> NodeExecution:
    row = session.get(NodeExecution, node_exec_id)
    if row is None:
        raise NotFoundError(f"node execution {node_exec_id} not found")
    return row


@dataclass(frozen=True)
class NodeState:
    """A node execution's status and stats, as its run's engine reads them."""

    node_exec_id: int
    graph_exec_id: str
    status: ExecutionStatus
    stats: dict[str, Any] | None


def node_state(session: Session, node_exec_id: int) -> NodeState:
    row = get_node_execution(session, node_exec_id)
    return NodeState(row.id, row.graph_exec_id, row.status, row.stats)


def node_executions(session: Session, graph_exec_id: str) -> Sequence[NodeExecution]:
    stmt = (
        select(NodeExecution)
        .where(NodeExecution.graph_exec_id == graph_exec_id)
        .order_by(NodeExecution.id)
    )
    return session.scalars(stmt).all()


@dataclass(frozen=True)
class PendingOutput:
    id: int | None  # None: recorded as delivered already, delivered from memory
    node_id: str
    name: str
    value: Any


def undelivered_outputs(session: Session, graph_exec_id: str, limit: int) -> list[PendingOutput]:
    """The oldest outputs not yet delivered, in the order they were persisted."""
    stmt = (
        select(
            NodeExecutionOutput.id,
            NodeExecution.node_id,
            NodeExecutionOutput.name,
            NodeExecutionOutput.value,
        )
        .join(NodeExecution, NodeExecution.id == NodeExecutionOutput.node_exec_id)
        .where(
            NodeExecutionOutput.graph_exec_id == graph_exec_id,
            ~NodeExecutionOutput.delivered,
        )
        .order_by(NodeExecutionOutput.id)
        .limit(limit)
    )
    return [PendingOutput(*row) for row in session.execute(stmt)]


def undelivered_outputs_of_node(
    session: Session, node_exec_id: int, limit: int
) -> list[PendingOutput]:
    """The oldest outputs of one node execution not yet delivered, in the order persisted."""
    stmt = (
        select(
            NodeExecutionOutput.id,
            NodeExecution.node_id,
            NodeExecutionOutput.name,
            NodeExecutionOutput.value,
        )
        .join(NodeExecution, NodeExecution.id == NodeExecutionOutput.node_exec_id)
        .where(NodeExecutionOutput.node_exec_id == node_exec_id, ~NodeExecutionOutput.delivered)
        .order_by(NodeExecutionOutput.id)
        .limit(limit)
    )
    return [PendingOutput(*row) for row in session.execute(stmt)]


def count_node_executions(session: Session, execution: GraphExecution, added: int) -> None:
    """Add ``added`` to the locked ``execution``'s node-execution count: one UPDATE, and the
    loaded object agrees with no flush of the unit of work at the commit."""
    if not added:
        return
    params = {"p_graph_exec_id": execution.id, "p_added": added}
    run(session, _count_node_executions(), params)
    set_committed_value(execution, "node_execution_count", execution.node_execution_count + added)


@functools.cache
def _count_node_executions() -> Update:
    count = _RUNS.c.node_execution_count
    return (
        update(_RUNS)
        .where(_RUNS.c.id == bindparam("p_graph_exec_id"))
        .values(node_execution_count=count + bindparam("p_added", type_=Integer))
    )


def mark_delivered(session: Session, output_ids: Sequence[int]) -> None:
    session.execute(
        update(NodeExecutionOutput)
        .where(NodeExecutionOutput.id.in_(output_ids))
        .values(delivered=True)
    )


def append_output(
    session: Session, node: NodeRef, seq: int, name: str, value: Any, delivered: bool = False
) -> None:
    """Record the ``seq``-th yield of a node execution once (a replayed yield is ignored)."""
    params = {
        "p_node_exec_id": node.node_exec_id,
        "p_graph_exec_id": node.graph_exec_id,
        "p_seq": seq,
        "p_name": name,
        "p_value": value,
        "p_delivered": delivered,
    }
    statement = _output_insert(session.get_bind().dialect.name)
    if run(session, statement, params).first() is not None:
        note(session, NodeOutput(node, seq, name, value))


@functools.cache
def _output_insert(dialect: str) -> Insert:
    """The INSERT of one output that a replayed yield leaves as it is."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    columns = ("node_exec_id", "graph_exec_id", "seq", "name", "value", "delivered")
    values = {name: bound(_OUTPUTS.c[name]) for name in columns}
    statement = insert(_OUTPUTS).values(**values)
    return statement.on_conflict_do_nothing(index_elements=["node_exec_id", "seq"]).returning(
        _OUTPUTS.c.seq
    )


def lock_running_attempt(session: Session, node_exec_id: int) -> int | None:
    """The attempt that owns a RUNNING node execution (None if it is not RUNNING); its row
    stays locked until the commit, so no re-delivered task takes it over in between."""
    stmt = (
        select(NodeExecution.attempt, NodeExecution.status)
        .where(NodeExecution.id == node_exec_id)
        .with_for_update()
    )
    attempt, status = session.execute(stmt).one()
    return int(attempt) if status is S.RUNNING else None


def running_attempt_and_stop(session: Session, node_exec_id: int) -> tuple[int | None, bool]:
    """The current attempt of a RUNNING node execution (None if it is not RUNNING), and
    whether its graph execution was stopped (cancel requested, or ended)."""
    stmt = (
        select(NodeExecution.attempt, GraphExecution.status, GraphExecution.cancel_requested_at)
        .join(GraphExecution, GraphExecution.id == NodeExecution.graph_exec_id)
        .where(NodeExecution.id == node_exec_id, NodeExecution.status == S.RUNNING)
    )
    row = session.execute(stmt).first()
    if row is None:
        return None, False
    attempt, status, cancel_requested_at = row
    return attempt, status in TERMINAL or cancel_requested_at is not None


def has_pending_work(session: Session, graph_exec_id: str) -> bool:
    """True while a node execution is QUEUED or RUNNING or an output awaits delivery."""
    active = exists().where(
        NodeExecution.graph_exec_id == graph_exec_id,
        NodeExecution.status.in_(ACTIVE_NODE_STATUSES),
    )
    undelivered = exists().where(
        NodeExecutionOutput.graph_exec_id == graph_exec_id,
        ~NodeExecutionOutput.delivered,
    )
    return bool(session.scalar(select(active | undelivered)))


@dataclass(frozen=True)
class NodeTask:
    """A node execution to send to the node queue, with what monitoring shows of it."""

    node_exec_id: int
    graph_exec_id: str
    task_id: str
    node_id: str
    block_id: str
    # Sent again for a RUNNING node execution whose task is gone: its claim takes it over,
    # as a re-delivered message's would.
    rerun: bool = False


def queued_nodes(graph_exec_id: str, sent: bool) -> Select[int, str | None, str, str]:
    """The run's QUEUED node executions noted as sent (or not), oldest first: the rows
    ``node_tasks`` turns into tasks."""
    return (
        select(
            NodeExecution.id,
            NodeExecution.celery_task_id,
            NodeExecution.node_id,
            NodeExecution.block_id,
        )
        .where(
            NodeExecution.graph_exec_id == graph_exec_id,
            NodeExecution.status == S.QUEUED,
            NodeExecution.dispatched if sent else ~NodeExecution.dispatched,
        )
        .order_by(NodeExecution.id)
    )


def node_tasks(
    session: Session, graph_exec_id: str, rows: Sequence[Row[Any]], mark_sent: bool = False
) -> list[NodeTask]:
    """The tasks of ``queued_nodes`` rows. A missing task id is assigned and stored, so a
    repeated send after a crash reuses the same id; with ``mark_sent`` they are also noted
    as sent (the caller sends them before its commit)."""
    tasks = [
        NodeTask(
            row.id,
            graph_exec_id,
            row.celery_task_id or str(uuid.uuid4()),
            row.node_id,
            row.block_id,
        )
        for row in rows
    ]
    changes = [
        {"id": task.node_exec_id, "celery_task_id": task.task_id}
        | ({"dispatched": True} if mark_sent else {})
        for task, row in zip(tasks, rows, strict=True)
        if mark_sent or not row.celery_task_id
    ]
    if changes:
        session.execute(update(NodeExecution), changes)
    return tasks


def claim_task_ids(session: Session, graph_exec_id: str) -> list[NodeTask]:
    """Every QUEUED execution of the run not yet sent, with its task id."""
    stmt = queued_nodes(graph_exec_id, sent=False)
    return node_tasks(session, graph_exec_id, list(session.execute(stmt)))


def queued_tasks(
    session: Session, graph_exec_id: str, node_ids: Collection[str] | None = None
) -> list[NodeTask]:
    """The QUEUED node executions of the run (of ``node_ids``, if given) already noted as
    sent, with their task ids."""
    stmt = queued_nodes(graph_exec_id, sent=True)
    if node_ids is not None:
        stmt = stmt.where(NodeExecution.node_id.in_(list(node_ids)))
    return node_tasks(session, graph_exec_id, list(session.execute(stmt)))


def new_task_id(sent_by: int | None = None) -> str:
    """A Celery task id for a node execution made ready. One that the node execution
    ``sent_by`` publishes after its commit starts with that one's id: its re-delivered or
    retried task re-sends only what it owns (``tasks_sent_by``), not every QUEUED execution
    of its successors."""
    task_id = str(uuid.uuid4())
    return task_id if sent_by is None else f"{sent_by}-{task_id}"


def tasks_sent_by(session: Session, graph_exec_id: str, node_exec_id: int) -> list[NodeTask]:
    """The run's QUEUED node executions that ``node_exec_id`` made ready and noted as sent
    (by any of its attempts), with their task ids."""
    owned = NodeExecution.celery_task_id.like(f"{int(node_exec_id)}-%")
    stmt = queued_nodes(graph_exec_id, sent=True).where(owned)
    return node_tasks(session, graph_exec_id, list(session.execute(stmt)))


def mark_dispatched(session: Session, node_exec_ids: Sequence[int]) -> None:
    session.execute(
        update(NodeExecution).where(NodeExecution.id.in_(node_exec_ids)).values(dispatched=True)
    )


@dataclass(frozen=True)
class StoredOutput:
    node_exec_id: int
    name: str
    value: Any
    seq: int


def outputs_of_graph_execution(session: Session, graph_exec_id: str) -> list[StoredOutput]:
    """Every output of the execution in the order persisted (output columns only)."""
    stmt = (
        select(
            NodeExecutionOutput.node_exec_id,
            NodeExecutionOutput.name,
            NodeExecutionOutput.value,
            NodeExecutionOutput.seq,
        )
        .where(NodeExecutionOutput.graph_exec_id == graph_exec_id)
        .order_by(NodeExecutionOutput.id)
    )
    return [StoredOutput(*row) for row in session.execute(stmt)]


def agent_outputs(
    nodes: dict[int, NodeExecution], stored: list[StoredOutput]
) -> dict[str, list[Any]]:
    """``agent_output`` values by output name, in yield order (SPEC §3.7), given the run's
    node executions by id and its outputs."""
    return graph_outputs(
        YieldedOutput(
            nodes[out.node_exec_id].node_id,
            nodes[out.node_exec_id].block_id,
            out.name,
            out.value,
            nodes[out.node_exec_id].input_data or {},
        )
        for out in stored
    )


def graph_outputs_of(session: Session, graph_exec_id: str) -> dict[str, list[Any]]:
    """The run's ``agent_output`` values by output name, in yield order, reading only the
    outputs of its ``agent_output`` node executions."""
    stmt = (
        select(
            NodeExecution.node_id,
            NodeExecution.block_id,
            NodeExecutionOutput.name,
            NodeExecutionOutput.value,
            NodeExecution.input_data,
        )
        .join(NodeExecution, NodeExecution.id == NodeExecutionOutput.node_exec_id)
        .where(
            NodeExecutionOutput.graph_exec_id == graph_exec_id,
            NodeExecution.block_id == GRAPH_OUTPUT_BLOCK,
        )
        .order_by(NodeExecutionOutput.id)
    )
    return graph_outputs(
        YieldedOutput(node_id, block_id, name, value, inputs or {})
        for node_id, block_id, name, value, inputs in session.execute(stmt)
    )


def status_of(session: Session, graph_exec_id: str, user_id: str | None = None) -> ExecutionStatus:
    stmt = select(GraphExecution.status, GraphExecution.user_id).where(
        GraphExecution.id == graph_exec_id
    )
    row = session.execute(stmt).first()
    if row is None or (user_id is not None and row.user_id != user_id):
        raise NotFoundError(f"graph execution {graph_exec_id!r} not found")
    status: ExecutionStatus = row.status
    return status


def count_running(session: Session, user_id: str) -> int:
    """The user's runs holding a slot; child executions hold none (their root holds one)."""
    stmt = select(func.count()).where(
        GraphExecution.user_id == user_id,
        GraphExecution.status.in_(HOLDING_A_SLOT),
        GraphExecution.parent_execution_id.is_(None),
    )
    return session.scalar(stmt) or 0


def oldest_queued(
    session: Session, user_id: str, limit: int, exclude: Collection[str] = ()
) -> list[str]:
    stmt = (
        select(GraphExecution.id)
        .where(
            GraphExecution.user_id == user_id,
            GraphExecution.status == S.QUEUED,
            GraphExecution.id.not_in(list(exclude)),
        )
        .order_by(GraphExecution.created_at)
        .limit(limit)
    )
    return list(session.scalars(stmt))


@dataclass(frozen=True)
class ExecutionSummary:
    """One row of a user's list of executions."""

    id: str
    graph_id: str
    graph_version: int
    graph_name: str
    status: ExecutionStatus
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    node_executions: int


def list_graph_executions(
    session: Session,
    user_id: str,
    status: ExecutionStatus | None = None,
    graph_id: str | None = None,
    limit: int = 20,
) -> list[ExecutionSummary]:
    """The user's executions, newest first, optionally of one status and one graph."""
    stmt = _summaries().where(GraphExecution.user_id == user_id)
    if status is not None:
        stmt = stmt.where(GraphExecution.status == status)
    if graph_id is not None:
        stmt = stmt.where(GraphExecution.graph_id == graph_id)
    stmt = stmt.order_by(GraphExecution.created_at.desc(), GraphExecution.id).limit(limit)
    return [ExecutionSummary(*row) for row in session.execute(stmt)]


def _summaries() -> Select[tuple[Any, ...]]:
    node_count = (
        select(func.count())
        .where(NodeExecution.graph_exec_id == GraphExecution.id)
        .correlate(GraphExecution)
        .scalar_subquery()
    )
    return select(
        GraphExecution.id,
        GraphExecution.graph_id,
        GraphExecution.graph_version,
        GraphVersion.name,
        GraphExecution.status,
        GraphExecution.created_at,
        GraphExecution.started_at,
        GraphExecution.ended_at,
        node_count,
    ).join(
        GraphVersion,
        (GraphVersion.id == GraphExecution.graph_id)
        & (GraphVersion.version == GraphExecution.graph_version),
    )


# --- the reconciler's queries (bounded; see engine/reconciler.py) ----------------------------


@dataclass(frozen=True)
class QueuedRun:
    id: str
    user_id: str
    is_child: bool  # a child execution, admitted without a slot of its own


def stale_queued_runs(session: Session, before: datetime, limit: int) -> list[QueuedRun]:
    """QUEUED executions unchanged since ``before``, oldest first."""
    stmt = (
        select(
            GraphExecution.id,
            GraphExecution.user_id,
            GraphExecution.parent_execution_id.is_not(None),
        )
        .where(GraphExecution.status == S.QUEUED, GraphExecution.updated_at < before)
        .order_by(GraphExecution.updated_at)
        .limit(limit)
    )
    return [QueuedRun(*row) for row in session.execute(stmt)]


def stale_running_runs(session: Session, before: datetime, limit: int) -> list[str]:
    """RUNNING executions with no progress since ``before``: the execution, its node
    executions and its latest output all unchanged since then; oldest first."""
    return stale_runs(session, S.RUNNING, before, limit)


def stale_runs(
    session: Session, status: ExecutionStatus, before: datetime, limit: int
) -> list[str]:
    """Executions in ``status`` with no progress since ``before`` (as ``stale_running_runs``)."""
    node_changed = exists().where(
        NodeExecution.graph_exec_id == GraphExecution.id, NodeExecution.updated_at >= before
    )
    latest_output = (
        select(NodeExecutionOutput.created_at)
        .where(NodeExecutionOutput.graph_exec_id == GraphExecution.id)
        .order_by(NodeExecutionOutput.id.desc())
        .limit(1)
        .correlate(GraphExecution)
        .scalar_subquery()
    )
    stmt = (
        select(GraphExecution.id)
        .where(GraphExecution.status == status, GraphExecution.updated_at < before)
        .where(~node_changed, func.coalesce(latest_output < before, True))
        .order_by(GraphExecution.updated_at)
        .limit(limit)
    )
    return list(session.scalars(stmt))


@dataclass(frozen=True)
class RunningNode:
    """A RUNNING node execution, its attempt and its run's status."""

    task: NodeTask
    attempt: int
    run_status: ExecutionStatus


def stale_running_nodes(session: Session, before: datetime, limit: int) -> list[RunningNode]:
    """RUNNING node executions unchanged since ``before``, oldest first."""
    stmt = (
        select(
            NodeExecution.id,
            NodeExecution.graph_exec_id,
            NodeExecution.celery_task_id,
            NodeExecution.node_id,
            NodeExecution.block_id,
            NodeExecution.attempt,
            GraphExecution.status,
        )
        .join(GraphExecution, GraphExecution.id == NodeExecution.graph_exec_id)
        .where(NodeExecution.status == S.RUNNING, NodeExecution.updated_at < before)
        .order_by(NodeExecution.updated_at)
        .limit(limit)
    )
    return [
        RunningNode(
            NodeTask(
                row.id,
                row.graph_exec_id,
                row.celery_task_id or str(uuid.uuid4()),
                row.node_id,
                row.block_id,
            ),
            row.attempt,
            row.status,
        )
        for row in session.execute(stmt)
    ]


def has_running_node(session: Session, graph_exec_id: str) -> bool:
    stmt = select(
        exists().where(
            NodeExecution.graph_exec_id == graph_exec_id, NodeExecution.status == S.RUNNING
        )
    )
    return bool(session.scalar(stmt))


@dataclass(frozen=True)
class EndedRun:
    id: str
    status: ExecutionStatus


def ended_runs_with_queued_nodes(session: Session, limit: int) -> list[EndedRun]:
    """FAILED or TERMINATED executions that still have a QUEUED node execution never sent
    (a sent one is ended by its own task's claim). Served by ``ix_node_executions_undispatched``."""
    stmt = (
        select(GraphExecution.id, GraphExecution.status)
        .join(NodeExecution, NodeExecution.graph_exec_id == GraphExecution.id)
        .where(NodeExecution.status == S.QUEUED, ~NodeExecution.dispatched)
        .where(GraphExecution.status.in_([S.FAILED, S.TERMINATED]))
        .distinct()
        .limit(limit)
    )
    return [EndedRun(*row) for row in session.execute(stmt)]
