"""Cancelling a graph execution (SPEC §7): stored durably first, then enforced."""

from __future__ import annotations

import logging

from sqlalchemy import select, update

from autoexec.engine.admission import admit_next
from autoexec.engine.context import Engine
from autoexec.engine.finalize import publish_status
from autoexec.statuses import TERMINAL, ExecutionStatus
from autoexec.store import executions as repo
from autoexec.store.tables import GraphExecution, NodeExecution, utcnow
from autoexec.store.transitions import transition_graph

S = ExecutionStatus
log = logging.getLogger(__name__)


def cancel_execution(engine: Engine, graph_exec_id: str, user_id: str | None = None) -> str:
    """Cancel ``graph_exec_id``; returns a sentence saying what happened."""
    with engine.db.session() as session:
        execution = repo.get_graph_execution(session, graph_exec_id, user_id)
        owner, status = execution.user_id, execution.status
    if status in TERMINAL:
        admit_next(engine, owner)  # in case the run's own hand-over was lost
        return f"graph execution {graph_exec_id} already ended {status.value}"
    with engine.db.session() as session:
        session.execute(
            update(GraphExecution)
            .where(GraphExecution.id == graph_exec_id)
            .where(GraphExecution.cancel_requested_at.is_(None))
            .values(cancel_requested_at=utcnow())
        )
    engine.coordinator.set_cancel(graph_exec_id)
    _revoke_in_flight(engine, graph_exec_id)
    terminated = terminate_execution(engine, graph_exec_id, owner)
    if terminated:
        return f"graph execution {graph_exec_id} cancelled"
    return f"graph execution {graph_exec_id} ended before it could be cancelled"


def _revoke_in_flight(engine: Engine, graph_exec_id: str) -> None:
    with engine.db.session() as session:
        task_ids = list(
            session.scalars(
                select(NodeExecution.celery_task_id).where(
                    NodeExecution.graph_exec_id == graph_exec_id,
                    NodeExecution.status.in_((S.QUEUED, S.RUNNING)),
                    NodeExecution.celery_task_id.is_not(None),
                )
            )
        )
    if not task_ids:
        return
    try:
        engine.dispatcher.revoke([t for t in task_ids if t])
    except Exception:
        # Revocation only speeds things up: node tasks also check the cancel flag.
        log.warning("could not revoke the tasks of %s", graph_exec_id, exc_info=True)


def terminate_execution(engine: Engine, graph_exec_id: str, user_id: str) -> bool:
    """Mark what is left of a cancelled execution TERMINATED and free its slot."""
    terminated = _terminate(engine, graph_exec_id)
    publish_status(engine, graph_exec_id, S.TERMINATED)
    admit_next(engine, user_id)
    return terminated


def _terminate(engine: Engine, graph_exec_id: str) -> bool:
    with engine.db.session() as session:
        repo.get_execution_state(
            session, graph_exec_id, lock=True
        )  # waits for a delivery in progress
        session.execute(
            update(NodeExecution)
            .where(
                NodeExecution.graph_exec_id == graph_exec_id,
                NodeExecution.status.in_((S.QUEUED, S.INCOMPLETE)),
            )
            .values(status=S.TERMINATED, ended_at=utcnow(), updated_at=utcnow())
        )
        return transition_graph(session, graph_exec_id, S.TERMINATED, error="cancelled")
