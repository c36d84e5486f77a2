"""Admission (SPEC §5): a QUEUED execution starts when its user has a free slot."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from autoexec.engine.context import Engine
from autoexec.statuses import ExecutionStatus
from autoexec.store import executions as repo
from autoexec.store.tables import GraphExecution
from autoexec.store.transitions import transition_graph

S = ExecutionStatus
log = logging.getLogger(__name__)


def admit(engine: Engine, graph_exec_id: str) -> bool:
    """Start a QUEUED execution if its user has a free slot; True if it is now RUNNING."""
    with engine.db.session() as session:
        execution = repo.get_graph_execution(session, graph_exec_id)
        if execution.status is not S.QUEUED:
            return execution.status is S.RUNNING
        if _refused(session, execution):
            transition_graph(session, graph_exec_id, S.TERMINATED, error=_refusal(execution))
            return False
        user_id = execution.user_id
    with engine.coordinator.admission_lock(user_id), engine.db.session() as session:
        next_up = _next_up(engine, session, user_id)
        admitted = graph_exec_id in next_up and transition_graph(session, graph_exec_id, S.RUNNING)
    # Older runs waiting ahead of this one start through their own run_graph message, so a
    # crash here strands nobody: an execution is only RUNNING once its own step is running.
    for other in next_up - {graph_exec_id}:
        engine.dispatcher.run_graph(other)
    if not admitted:
        log.info("graph execution %s waits for a free slot of user %s", graph_exec_id, user_id)
    return admitted


def _next_up(engine: Engine, session: Session, user_id: str) -> set[str]:
    """The user's oldest QUEUED executions that fit in the free slots, oldest first
    whichever run_graph message arrives first. Refused ones are ended and take no slot."""
    free = engine.settings.max_concurrent_runs_per_user - repo.count_running(session, user_id)
    chosen: set[str] = set()
    while free > len(chosen):
        candidates = repo.oldest_queued(session, user_id, free - len(chosen), exclude=chosen)
        if not candidates:
            break
        for candidate_id in candidates:
            candidate = repo.get_graph_execution(session, candidate_id)
            if _refused(session, candidate):
                transition_graph(session, candidate_id, S.TERMINATED, error=_refusal(candidate))
            else:
                chosen.add(candidate_id)
    return chosen


def _refused(session: Session, execution: GraphExecution) -> bool:
    if execution.cancel_requested_at is not None:
        return True
    for ancestor_id in {execution.parent_execution_id, execution.root_execution_id} - {None}:
        ancestor = session.get(GraphExecution, ancestor_id)
        if ancestor is not None and ancestor.status is S.TERMINATED:
            return True
    return False


def _refusal(execution: GraphExecution) -> str:
    if execution.cancel_requested_at is not None:
        return "cancelled before it started"
    return "its parent execution was terminated"


def admit_next(engine: Engine, user_id: str) -> None:
    """Hand free slots of a user to the oldest QUEUED executions."""
    with engine.db.session() as session:
        free = engine.settings.max_concurrent_runs_per_user - repo.count_running(session, user_id)
        waiting = repo.oldest_queued(session, user_id, free) if free > 0 else []
    for graph_exec_id in waiting:
        engine.dispatcher.run_graph(graph_exec_id)
