"""Suspended node executions (SPEC §8): what resuming one reads and locks, whatever its kind."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from autoexec.hooks import NodeRef
from autoexec.statuses import ExecutionStatus
from autoexec.store.tables import GraphExecution, NodeExecution, NodeExecutionOutput

S = ExecutionStatus


def next_output_seq(session: Session, node_exec_id: int) -> int:
    """The seq the node execution's next output takes."""
    stmt = select(func.coalesce(func.max(NodeExecutionOutput.seq) + 1, 0)).where(
        NodeExecutionOutput.node_exec_id == node_exec_id
    )
    return int(session.scalar(stmt) or 0)


def lock_node(session: Session, node_exec_id: int) -> tuple[NodeRef, ExecutionStatus, int]:
    """The suspended node execution a resumption ends, locked: which it is, its status and
    attempt."""
    row = session.execute(
        select(
            NodeExecution.graph_exec_id,
            GraphExecution.user_id,
            NodeExecution.node_id,
            NodeExecution.block_id,
            NodeExecution.status,
            NodeExecution.attempt,
        )
        .join(GraphExecution, GraphExecution.id == NodeExecution.graph_exec_id)
        .where(NodeExecution.id == node_exec_id)
        .with_for_update(of=NodeExecution)
    ).one()
    node = NodeRef(row.graph_exec_id, row.user_id, node_exec_id, row.node_id, row.block_id)
    return node, row.status, row.attempt


def stats_of_waiting_nodes(
    session: Session, graph_exec_id: str
) -> list[tuple[int, dict[str, Any]]]:
    """The stats of the run's node executions left WAITING or TERMINATED (a fan-out's
    elements may still run), by node execution id."""
    rows = session.execute(
        select(NodeExecution.id, NodeExecution.stats).where(
            NodeExecution.graph_exec_id == graph_exec_id,
            NodeExecution.status.in_((S.WAITING, S.TERMINATED)),
        )
    )
    return [(node_exec_id, stats) for node_exec_id, stats in rows if stats]


def suspended_nodes(session: Session, graph_exec_id: str) -> list[int]:
    """The run's node executions suspended now (in REVIEW or WAITING), by id."""
    rows = session.scalars(
        select(NodeExecution.id).where(
            NodeExecution.graph_exec_id == graph_exec_id,
            NodeExecution.status.in_((S.REVIEW, S.WAITING)),
        )
    )
    return list(rows)
