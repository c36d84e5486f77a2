"""Status changes: one conditional UPDATE per change, applied only if SPEC §2 allows it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, func, true, update
from sqlalchemy.orm import Session

from autoexec.statuses import (
    GRAPH_TRANSITIONS,
    NODE_TRANSITIONS,
    TERMINAL,
    ExecutionStatus,
    sources_of,
)
from autoexec.store.tables import GraphExecution, NodeExecution, utcnow

S = ExecutionStatus


def transition_graph(
    session: Session,
    graph_exec_id: str,
    target: ExecutionStatus,
    *,
    allowed_from: frozenset[ExecutionStatus] | None = None,
    **fields: Any,
) -> bool:
    """Move a graph execution to ``target`` if its current status allows it; True if applied.

    ``allowed_from`` narrows the allowed sources further (never widens them).
    """
    sources = sources_of(target, GRAPH_TRANSITIONS)
    if allowed_from is not None:
        sources &= allowed_from
    values = _timestamps(target, fields)
    if target is S.RUNNING:
        values.setdefault("started_at", _first(GraphExecution.started_at, values["updated_at"]))
    stmt = (
        update(GraphExecution)
        .where(GraphExecution.id == graph_exec_id)
        .where(GraphExecution.status.in_(sources))
        .values(status=target, **values)
    )
    result: CursorResult[Any] = session.execute(stmt)  # type: ignore[assignment]
    return result.rowcount == 1


def transition_node(
    session: Session,
    node_exec_id: int,
    target: ExecutionStatus,
    *,
    allowed_from: frozenset[ExecutionStatus] | None = None,
    attempt_is: int | None = None,
    **fields: Any,
) -> bool:
    """Move a node execution to ``target`` if its current status allows it; True if applied.

    ``allowed_from`` narrows the allowed sources further (never widens them); ``attempt_is``
    applies the change only if that attempt still owns the execution.
    """
    sources = sources_of(target, NODE_TRANSITIONS)
    if allowed_from is not None:
        sources &= allowed_from
    values = _timestamps(target, fields)
    if target is S.QUEUED:
        values.setdefault("queued_at", values["updated_at"])
    if target is S.RUNNING:
        values.setdefault("started_at", _first(NodeExecution.started_at, values["updated_at"]))
    stmt = (
        update(NodeExecution)
        .where(NodeExecution.id == node_exec_id)
        .where(NodeExecution.status.in_(sources))
        .where(NodeExecution.attempt == attempt_is if attempt_is is not None else true())
        .values(status=target, **values)
        # No ORM object needs refreshing: the engine reads node executions with fresh queries.
        .execution_options(synchronize_session=False)
    )
    result: CursorResult[Any] = session.execute(stmt)  # type: ignore[assignment]
    return result.rowcount == 1


def terminate_nodes(
    session: Session,
    graph_exec_id: str,
    statuses: frozenset[ExecutionStatus],
    **fields: Any,
) -> int:
    """Move every node execution of ``graph_exec_id`` in one of ``statuses`` to TERMINATED, in
    one UPDATE (only from the statuses SPEC §2 allows); how many were moved."""
    sources = sources_of(S.TERMINATED, NODE_TRANSITIONS) & statuses
    stmt = (
        update(NodeExecution)
        .where(NodeExecution.graph_exec_id == graph_exec_id)
        .where(NodeExecution.status.in_(sources))
        .values(status=S.TERMINATED, **_timestamps(S.TERMINATED, fields))
    )
    result: CursorResult[Any] = session.execute(stmt)  # type: ignore[assignment]
    return result.rowcount


def _first(column: Any, now: datetime) -> Any:
    """Keep a timestamp already set (a run resumed from REVIEW or WAITING keeps its start)."""
    return func.coalesce(column, now)


def _timestamps(target: ExecutionStatus, fields: dict[str, Any]) -> dict[str, Any]:
    now = utcnow()
    values = {"updated_at": now, **fields}
    if target in TERMINAL:
        values.setdefault("ended_at", now)
    return values
