"""Status changes: one conditional UPDATE per change, applied only if SPEC §2 allows it."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, Row, Update, bindparam, func, select, update
from sqlalchemy.orm import Session

from autoexec.hooks import GraphExecutionChange, NodeExecutionChange, NodeRef, note
from autoexec.statuses import (
    GRAPH_TRANSITIONS,
    NODE_TRANSITIONS,
    TERMINAL,
    ExecutionStatus,
    sources_of,
)
from autoexec.store.executions import ClaimView
from autoexec.store.statements import bound, run, table
from autoexec.store.tables import GraphExecution, NodeExecution, utcnow

S = ExecutionStatus
_NODES = table(NodeExecution)
_RUNS = table(GraphExecution)


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
        .returning(GraphExecution.user_id, GraphExecution.graph_id, GraphExecution.graph_version)
    )
    row = session.execute(stmt).first()
    if row is None:
        return False
    change = GraphExecutionChange(
        graph_exec_id, row.user_id, row.graph_id, row.graph_version, target,
        error=fields.get("error"), stats=fields.get("stats"),
    )  # fmt: skip
    note(session, change)
    return True


def transition_node(
    session: Session,
    node_exec_id: int,
    target: ExecutionStatus,
    *,
    allowed_from: frozenset[ExecutionStatus] | None = None,
    attempt_is: int | None = None,
    **fields: Any,
) -> bool:
    """Move a node execution to ``target`` if its current status allows it; True if applied
    (see ``move_node``)."""
    moved = move_node(
        session, node_exec_id, target, allowed_from=allowed_from, attempt_is=attempt_is, **fields
    )
    return moved is not None


def move_node(
    session: Session,
    node_exec_id: int,
    target: ExecutionStatus,
    *,
    allowed_from: frozenset[ExecutionStatus] | None = None,
    attempt_is: int | None = None,
    **fields: Any,
) -> NodeRef | None:
    """Move a node execution to ``target`` if its current status allows it; which node
    execution it is if applied, else None.

    ``allowed_from`` narrows the allowed sources further (never widens them); ``attempt_is``
    applies the change only if that attempt still owns the execution.
    """
    sources = sources_of(target, NODE_TRANSITIONS)
    if allowed_from is not None:
        sources &= allowed_from
    values = _timestamps(target, fields)
    if target is S.QUEUED:
        values.setdefault("queued_at", values["updated_at"])
    checks_attempt = attempt_is is not None
    statement = _node_move(target, frozenset(sources), checks_attempt, tuple(sorted(values)))
    params = {f"p_{name}": value for name, value in values.items()}
    params["p_node_exec_id"] = node_exec_id
    if checks_attempt:
        params["p_attempt_is"] = attempt_is
    row = run(session, statement, params).first()
    return None if row is None else _note_node(session, row, target, fields)


@functools.cache
def _node_move(
    target: ExecutionStatus,
    sources: frozenset[ExecutionStatus],
    checks_attempt: bool,
    names: tuple[str, ...],
) -> Update:
    """``move_node``'s UPDATE for one shape of change, built once: the node execution's id,
    the attempt and the values named in ``names`` are bound when it runs."""
    values: dict[str, Any] = {name: bound(_NODES.c[name]) for name in names}
    if target is S.RUNNING and "started_at" not in names:
        values["started_at"] = _first(_NODES.c.started_at, bound(_NODES.c.updated_at))
    statement = (
        update(_NODES)
        .where(_NODES.c.id == bindparam("p_node_exec_id"))
        .where(_NODES.c.status.in_(sources))
    )
    if checks_attempt:
        statement = statement.where(_NODES.c.attempt == bindparam("p_attempt_is"))
    return statement.values(status=target, **values).returning(*_NODE_COLUMNS)


def start_queued_node(session: Session, node_exec_id: int) -> ClaimView | None:
    """Claim a QUEUED node execution of a live run in one statement: RUNNING, next attempt;
    the claim's view of it as it was before (node execution, with its run's identity and
    clock), or None if it was not QUEUED or its run is stopped or ended (the caller then
    reads why)."""
    row = run(session, _claim(), {"p_node_exec_id": node_exec_id, "p_now": utcnow()}).first()
    if row is None:
        return None
    _note_node(session, row, S.RUNNING, {})
    return _view_of_started(row)


def _view_of_started(row: Row[Any]) -> ClaimView:
    """The claim's view of a node execution ``start_queued_node`` moved to RUNNING, as it
    was before (its attempt before the claim's)."""
    return ClaimView(
        node_exec_id=row.id,
        node_id=row.node_id,
        block_id=row.block_id,
        status=S.QUEUED,
        attempt=row.attempt - 1,
        worker_losses=row.worker_losses,
        input_data=row.input_data,
        stats=row.stats,
        graph_exec_id=row.graph_exec_id,
        graph_id=row.graph_id,
        graph_version=row.graph_version,
        user_id=row.user_id,
        run_status=S.RUNNING,
        cancel_requested_at=None,
        max_run_seconds=row.max_run_seconds,
        started_at=row.run_started_at,
    )


def restart_running_node(
    session: Session, node_exec_id: int, attempt: int, worker_lost: bool
) -> bool:
    """A re-delivered or retried task takes over a RUNNING node execution as ``attempt``;
    ``worker_lost`` counts a lost worker (when the message was re-delivered: a retry's worker
    is alive). True if it was RUNNING."""
    losses = NodeExecution.worker_losses + (1 if worker_lost else 0)
    result = session.execute(
        update(NodeExecution)
        .where(NodeExecution.id == node_exec_id, NodeExecution.status == S.RUNNING)
        .values(attempt=attempt, worker_losses=losses, updated_at=utcnow())
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def count_lost_task(session: Session, node_exec_id: int, attempt: int) -> bool:
    """Count a lost worker for a RUNNING node execution whose task is gone, if ``attempt``
    still owns it; True if so (the message sent again then takes it over)."""
    result = session.execute(
        update(NodeExecution)
        .where(
            NodeExecution.id == node_exec_id,
            NodeExecution.status == S.RUNNING,
            NodeExecution.attempt == attempt,
        )
        .values(worker_losses=NodeExecution.worker_losses + 1, updated_at=utcnow())
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def note_node_retry(
    session: Session, node_exec_id: int, attempt: int, stats: dict[str, Any]
) -> None:
    """Store the stats (with its retries) of a RUNNING node execution if ``attempt`` still
    owns it."""
    session.execute(
        update(NodeExecution)
        .where(
            NodeExecution.id == node_exec_id,
            NodeExecution.status == S.RUNNING,
            NodeExecution.attempt == attempt,
        )
        .values(stats=stats, updated_at=utcnow())
    )


def set_node_stats(session: Session, node_exec_id: int, stats: dict[str, Any]) -> None:
    """Replace a node execution's stats (its cost counted after its end)."""
    session.execute(
        update(NodeExecution).where(NodeExecution.id == node_exec_id).values(stats=stats)
    )


@functools.cache
def _claim() -> Update:
    now = bound(_NODES.c.updated_at, "now")
    run_is_live = (
        select(_RUNS.c.id)
        .where(_RUNS.c.id == _NODES.c.graph_exec_id)
        .where(_RUNS.c.cancel_requested_at.is_(None))
        .where(_RUNS.c.status.not_in(TERMINAL))
        .exists()
    )
    return (
        update(_NODES)
        .where(_NODES.c.id == bindparam("p_node_exec_id"))
        .where(_NODES.c.status == S.QUEUED)
        .where(run_is_live)
        .values(
            status=S.RUNNING,
            attempt=_NODES.c.attempt + 1,
            started_at=_first(_NODES.c.started_at, now),
            updated_at=now,
        )
        .returning(*_NODE_COLUMNS, *_CLAIM_COLUMNS)
    )


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
        .returning(*_NODE_COLUMNS)
        .execution_options(synchronize_session=False)
    )
    rows = session.execute(stmt).all()
    for row in rows:
        _note_node(session, row, S.TERMINATED, fields)
    return len(rows)


# What a node execution's change tells the hooks; the owner comes from its graph execution.
_NODE_COLUMNS = (
    NodeExecution.id,
    NodeExecution.graph_exec_id,
    NodeExecution.node_id,
    NodeExecution.block_id,
    select(GraphExecution.user_id)
    .where(GraphExecution.id == NodeExecution.graph_exec_id)
    .scalar_subquery()
    .label("user_id"),
    NodeExecution.queued_at,
    NodeExecution.started_at,
)


def _of_run(column: Any, label: str) -> Any:
    return (
        select(column)
        .where(GraphExecution.id == NodeExecution.graph_exec_id)
        .scalar_subquery()
        .label(label)
    )


# What claiming a node execution needs besides ``_NODE_COLUMNS``.
_CLAIM_COLUMNS = (
    NodeExecution.attempt,
    NodeExecution.worker_losses,
    NodeExecution.input_data,
    NodeExecution.stats,
    _of_run(GraphExecution.graph_id, "graph_id"),
    _of_run(GraphExecution.graph_version, "graph_version"),
    _of_run(GraphExecution.max_run_seconds, "max_run_seconds"),
    _of_run(GraphExecution.started_at, "run_started_at"),
)


def _note_node(
    session: Session, row: Row[Any], target: ExecutionStatus, fields: dict[str, Any]
) -> NodeRef:
    ref = NodeRef(row.graph_exec_id, row.user_id, row.id, row.node_id, row.block_id)
    waited = None
    if target is S.RUNNING and row.queued_at is not None and row.started_at is not None:
        waited = max((row.started_at - row.queued_at).total_seconds(), 0.0)
    change = NodeExecutionChange(
        ref, target, error=fields.get("error"), stats=fields.get("stats"), queued_seconds=waited
    )
    note(session, change)
    return ref


def _first(column: Any, now: datetime | BindParameter[Any]) -> Any:
    """Keep a timestamp already set (a run resumed from REVIEW or WAITING keeps its start)."""
    return func.coalesce(column, now)


def _timestamps(target: ExecutionStatus, fields: dict[str, Any]) -> dict[str, Any]:
    now = utcnow()
    values = {"updated_at": now, **fields}
    if target in TERMINAL:
        values.setdefault("ended_at", now)
    return values
