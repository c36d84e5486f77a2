"""The queries of child executions (SPEC §8.1): which node waits for a child, how deep a run
nests, the descendants a cancel reaches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from autoexec.statuses import SUSPENDED, TERMINAL, ExecutionStatus
from autoexec.store import executions as repo
from autoexec.store.tables import GraphExecution, NodeExecution


@dataclass(frozen=True)
class Child:
    id: str
    status: ExecutionStatus
    error: str | None
    parent_execution_id: str | None
    parent_node_exec_id: int | None


_CHILD_COLUMNS = (
    GraphExecution.id,
    GraphExecution.status,
    GraphExecution.error,
    GraphExecution.parent_execution_id,
    GraphExecution.parent_node_exec_id,
)


def get_child(session: Session, graph_exec_id: str) -> Child | None:
    row = session.execute(select(*_CHILD_COLUMNS).where(GraphExecution.id == graph_exec_id)).first()
    return None if row is None else Child(*row)


def child_of_node(session: Session, node_exec_id: int) -> Child | None:
    """The child execution a node execution created, if any."""
    stmt = select(*_CHILD_COLUMNS).where(GraphExecution.parent_node_exec_id == node_exec_id)
    row = session.execute(stmt).first()
    return None if row is None else Child(*row)


def depth_of(session: Session, graph_exec_id: str) -> int:
    """How many ancestors the execution has (0 for a top-level run)."""
    depth = 0
    parent = session.scalar(
        select(GraphExecution.parent_execution_id).where(GraphExecution.id == graph_exec_id)
    )
    while parent is not None:
        depth += 1
        parent = session.scalar(
            select(GraphExecution.parent_execution_id).where(GraphExecution.id == parent)
        )
    return depth


def root_of(session: Session, graph_exec_id: str) -> str:
    root = session.scalar(
        select(GraphExecution.root_execution_id).where(GraphExecution.id == graph_exec_id)
    )
    return root or graph_exec_id


def descendants(session: Session, graph_exec_id: str) -> list[str]:
    """Every execution below ``graph_exec_id``, parents before their children: one query of
    the executions of its root, walked down from it."""
    stmt = select(GraphExecution.id, GraphExecution.parent_execution_id).where(
        GraphExecution.root_execution_id == root_of(session, graph_exec_id),
        GraphExecution.parent_execution_id.is_not(None),
    )
    children: dict[str | None, list[str]] = {}
    for child_id, parent_id in session.execute(stmt):
        children.setdefault(parent_id, []).append(child_id)
    found: list[str] = []
    level = [graph_exec_id]
    while level:
        level = [child for parent in level for child in children.get(parent, [])]
        found += level
    return found


def active_children(session: Session, graph_exec_id: str) -> Sequence[str]:
    """The execution's children that have not ended."""
    stmt = select(GraphExecution.id).where(
        GraphExecution.parent_execution_id == graph_exec_id,
        GraphExecution.status.not_in(TERMINAL),
    )
    return session.scalars(stmt).all()


def ended_children_of_suspended_nodes(session: Session, limit: int) -> list[str]:
    """Ended child executions whose parent node execution still waits for them (the process
    that ended them died before resuming it)."""
    stmt = (
        select(GraphExecution.id)
        .join(NodeExecution, NodeExecution.id == GraphExecution.parent_node_exec_id)
        .where(GraphExecution.status.in_(TERMINAL), NodeExecution.status.in_(SUSPENDED))
        .limit(limit)
    )
    return list(session.scalars(stmt))


def outputs_of(session: Session, graph_exec_id: str) -> dict[str, list[Any]]:
    """The execution's graph outputs by name, in yield order."""
    nodes = {node.id: node for node in repo.node_executions(session, graph_exec_id)}
    return repo.agent_outputs(nodes, repo.outputs_of_graph_execution(session, graph_exec_id))


def orphaned_children(session: Session, limit: int) -> list[str]:
    """Executions still going whose parent execution has ended (a process died after ending
    the parent and before stopping its children), oldest first."""
    parent = aliased(GraphExecution)
    stmt = (
        select(GraphExecution.id)
        .join(parent, parent.id == GraphExecution.parent_execution_id)
        .where(GraphExecution.status.not_in(TERMINAL), parent.status.in_(TERMINAL))
        .order_by(GraphExecution.created_at)
        .limit(limit)
    )
    return list(session.scalars(stmt))
