"""The queries of admission (SPEC §5): the per-user lock, free slots, the queue of waiting runs."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, func, literal, select
from sqlalchemy.orm import Session

from autoexec.statuses import HOLDING_A_SLOT, ExecutionStatus
from autoexec.store.executions import NodeTask, node_tasks, queued_nodes
from autoexec.store.graphs import ensure_user
from autoexec.store.tables import GraphExecution, NodeExecution, NodeExecutionOutput, User

S = ExecutionStatus


def lock_user(session: Session, user_id: str) -> None:
    """Serialize the admission decisions of one user until the transaction ends.

    Every transaction that starts a run or ends one takes this lock before it locks or changes
    a graph execution row, so the running count it reads stays true until its commit, and two
    such transactions never wait for each other in opposite orders. (``NO KEY UPDATE``: new
    executions of the user, which only check that the user exists, are not held up.)
    """
    stmt = select(User.id).where(User.id == user_id).with_for_update(key_share=True)
    if session.scalar(stmt) is None:
        ensure_user(session, user_id)  # a user row lost to a manual cleanup: lock the new one
        session.scalar(stmt)


def share_user_lock(session: Session, user_id: str) -> None:
    """Wait until no transaction holds the user's admission lock, and keep it from being taken
    until this transaction ends; statements after this one see what those transactions did."""
    session.scalar(select(User.id).where(User.id == user_id).with_for_update(read=True))


@dataclass(frozen=True)
class WaitingRun:
    """A QUEUED execution, with what decides whether it may still start."""

    id: str
    cancel_requested_at: datetime | None
    parent_execution_id: str | None
    root_execution_id: str | None
    max_run_seconds: float | None
    node_execution_count: int

    @property
    def is_child(self) -> bool:
        return self.parent_execution_id is not None

    @property
    def ancestors(self) -> set[str]:
        return {i for i in (self.parent_execution_id, self.root_execution_id) if i is not None}


def oldest_waiting(
    session: Session, user_id: str, limit: int, exclude: Collection[str] = ()
) -> list[WaitingRun]:
    """The user's oldest QUEUED executions, oldest first."""
    return [run for run, _ in _oldest_waiting(session, user_id, limit, exclude)]


def waiting_and_running(session: Session, user_id: str, limit: int) -> tuple[list[WaitingRun], int]:
    """The user's oldest QUEUED executions (oldest first) and how many it has RUNNING, in one
    query; with no execution waiting the count is not needed, and reads 0."""
    rows = _oldest_waiting(session, user_id, limit, (), with_running=True)
    return [run for run, _ in rows], (rows[0][1] if rows else 0)


def _oldest_waiting(
    session: Session,
    user_id: str,
    limit: int,
    exclude: Collection[str],
    with_running: bool = False,
) -> list[tuple[WaitingRun, int]]:
    top_level = GraphExecution.parent_execution_id.is_(None)  # children take no slot
    running = (
        select(func.count())
        .where(
            GraphExecution.user_id == user_id,
            GraphExecution.status.in_(HOLDING_A_SLOT),
            top_level,
        )
        .scalar_subquery()
    )
    stmt = (
        select(
            GraphExecution.id,
            GraphExecution.cancel_requested_at,
            GraphExecution.parent_execution_id,
            GraphExecution.root_execution_id,
            GraphExecution.max_run_seconds,
            GraphExecution.node_execution_count,
            running if with_running else literal(0),
        )
        .where(GraphExecution.user_id == user_id, GraphExecution.status == S.QUEUED, top_level)
        .order_by(GraphExecution.created_at, GraphExecution.id)
        .limit(limit)
    )
    if exclude:
        stmt = stmt.where(GraphExecution.id.not_in(list(exclude)))
    return [(WaitingRun(*row[:-1]), int(row[-1])) for row in session.execute(stmt)]


def any_terminated(session: Session, graph_exec_ids: Collection[str]) -> bool:
    if not graph_exec_ids:
        return False
    stmt = select(
        exists().where(
            GraphExecution.id.in_(list(graph_exec_ids)),
            GraphExecution.status == S.TERMINATED,
        )
    )
    return bool(session.scalar(stmt))


def claim_starting_nodes(session: Session, graph_exec_id: str) -> list[NodeTask] | None:
    """Give the run's QUEUED node executions not yet sent their task ids and note them sent
    (the caller sends them before its commit); None, claiming nothing, if the run has an
    output to deliver: its first step is then more than sending them."""
    undelivered = (
        exists()
        .where(
            NodeExecutionOutput.graph_exec_id == graph_exec_id,
            ~NodeExecutionOutput.delivered,
        )
        .label("undelivered")
    )
    stmt = queued_nodes(graph_exec_id, sent=False).add_columns(undelivered)
    rows = list(session.execute(stmt))
    if any(row.undelivered for row in rows):
        return None
    return node_tasks(session, graph_exec_id, rows, mark_sent=True)


def has_step_work(session: Session, graph_exec_id: str) -> bool:
    """Whether an orchestrator step would find something to do in a RUNNING execution: a
    QUEUED node execution not sent yet, an output to deliver, or no node execution queued or
    running any more (the run is to be finalized)."""
    unsent = exists().where(
        NodeExecution.graph_exec_id == graph_exec_id,
        NodeExecution.status == S.QUEUED,
        ~NodeExecution.dispatched,
    )
    undelivered = exists().where(
        NodeExecutionOutput.graph_exec_id == graph_exec_id,
        ~NodeExecutionOutput.delivered,
    )
    active = exists().where(
        NodeExecution.graph_exec_id == graph_exec_id,
        NodeExecution.status.in_((S.QUEUED, S.RUNNING)),
    )
    return bool(session.scalar(select(unsent | undelivered | ~active)))
