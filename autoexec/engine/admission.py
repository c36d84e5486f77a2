"""Admission (SPEC §5): a user has at most ``max_concurrent_runs_per_user`` executions RUNNING;
the others wait QUEUED and are given the free slots oldest first.

A run starts only in a transaction that holds its user's admission lock (``lock_user``) and
moves it QUEUED -> RUNNING: the one of its own ``run_graph`` message, or the one that ends
another run of the user (``finalize``, ``stop_execution``), which hands the freed slot on. A
``run_graph`` that finds no free slot sends nothing: the run waits for a slot to be handed to it.

A run handed a slot by another transaction is sent one ``run_graph`` message before that
transaction commits. Its consumer takes the user's lock before reading the run, so it sees the
commit. If the commit is lost, the message finds the run QUEUED and admits it the usual way; if
the publish fails, the transaction rolls back and whatever ended the other run does it again.
So no crash leaves a run RUNNING with no message to start it, and no slot is handed twice.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from autoexec.engine.context import Engine
from autoexec.statuses import ExecutionStatus
from autoexec.store import admission as store
from autoexec.store import executions as repo
from autoexec.store.admission import WaitingRun, lock_user
from autoexec.store.transitions import transition_graph

S = ExecutionStatus
log = logging.getLogger(__name__)


def admit(engine: Engine, graph_exec_id: str) -> bool:
    """Start a QUEUED execution if its user has a free slot for it (older waiting runs come
    first); True if it is RUNNING now."""
    with engine.db.session() as session:
        user_id = repo.get_execution_state(session, graph_exec_id).user_id
        lock_user(session, user_id)
        execution = repo.get_execution_state(session, graph_exec_id, lock=True)
        if execution.status is not S.QUEUED:
            return execution.status is S.RUNNING
        run = WaitingRun(
            execution.id,
            execution.cancel_requested_at,
            execution.parent_execution_id,
            execution.root_execution_id,
        )
        if _refuse_if_stopped(session, run):
            return False
        admitted = graph_exec_id in fill_free_slots(engine, session, user_id, graph_exec_id)
    if not admitted:
        log.info("graph execution %s waits for a free slot of user %s", graph_exec_id, user_id)
    return admitted


def admit_next(engine: Engine, user_id: str) -> None:
    """Hand the user's free slots to the oldest waiting runs (a recovery path: the transaction
    that ends a run already does it)."""
    with engine.db.session() as session:
        lock_user(session, user_id)
        fill_free_slots(engine, session, user_id)


def fill_free_slots(
    engine: Engine, session: Session, user_id: str, current: str | None = None
) -> set[str]:
    """Move the user's oldest waiting runs to RUNNING while slots are free, under the user's
    lock (taken by the caller); each one but ``current`` (whose own message is being handled)
    is sent its ``run_graph`` before the caller commits. The ids admitted."""
    free = engine.settings.max_concurrent_runs_per_user - repo.count_running(session, user_id)
    admitted: set[str] = set()
    seen: set[str] = set()
    while len(admitted) < free:
        waiting = store.oldest_waiting(session, user_id, free - len(admitted), exclude=seen)
        if not waiting:
            break
        seen.update(run.id for run in waiting)
        admitted.update(run.id for run in waiting if _start(session, run))
    for graph_exec_id in sorted(admitted - {current}):
        engine.dispatcher.run_graph(graph_exec_id)
    return admitted


def _start(session: Session, run: WaitingRun) -> bool:
    if _refuse_if_stopped(session, run):
        return False
    return transition_graph(session, run.id, S.RUNNING, allowed_from=frozenset({S.QUEUED}))


def _refuse_if_stopped(session: Session, run: WaitingRun) -> bool:
    """End a waiting run that must not start (SPEC §5: cancelled, or its parent or root
    execution was terminated); True if it was refused."""
    if run.cancel_requested_at is not None:
        reason = "cancelled before it started"
    elif store.any_terminated(session, run.ancestors):
        reason = "its parent execution was terminated"
    else:
        return False
    transition_graph(session, run.id, S.TERMINATED, error=reason)
    return True
