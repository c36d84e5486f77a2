"""What ending a run reads of its node executions: their outcomes, not their inputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from autoexec.statuses import ExecutionStatus
from autoexec.store.tables import NodeExecution


@dataclass(frozen=True)
class NodeOutcome:
    node_id: str
    status: ExecutionStatus
    error: str | None
    stats: dict[str, Any]


def node_outcomes(session: Session, graph_exec_id: str) -> list[NodeOutcome]:
    """Every node execution of the run (creation order), without its inputs."""
    stmt = (
        select(
            NodeExecution.node_id, NodeExecution.status, NodeExecution.error, NodeExecution.stats
        )
        .where(NodeExecution.graph_exec_id == graph_exec_id)
        .order_by(NodeExecution.id)
    )
    return [
        NodeOutcome(node_id, status, error, stats or {})
        for node_id, status, error, stats in session.execute(stmt)
    ]
