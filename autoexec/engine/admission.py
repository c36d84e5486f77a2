"""Admission (SPEC §5): a user has at most ``max_concurrent_runs_per_user`` executions RUNNING;
the others wait QUEUED and are given the free slots oldest first.

A run starts only in a transaction that holds its user's admission lock (``lock_user``) and
moves it QUEUED -> RUNNING: the one of its own ``run_graph`` message, or the one that ends
another run of the user (``finalize``, ``stop_execution``), which hands the freed slot on. A
``run_graph`` that finds no free slot sends nothing: the run waits for a slot to be handed to it.

A child execution (SPEC §8.1) takes no slot: its root holds one, WAITING, for as long as the
child runs, so a child counted against the same limit could deadlock (one slot: the root waits
for a child that waits for the root's slot). A child's ``run_graph`` starts it at once, under the
user's lock; it is never among the waiting runs that freed slots are handed to.

A run handed a slot by another transaction is started by it before it commits: its starting
node executions are sent (``launch``), or else one ``run_graph`` message, whose consumer takes
the user's lock before reading the run, so it sees the commit. If the commit is lost, that
message finds the run QUEUED and admits it the usual way; if a publish fails, the transaction
rolls back and whatever ended the other run does it again. So no crash leaves a run RUNNING
with nothing sent to move it on, and no slot is handed twice.
"""

from __future__ import annotations

import logging
from enum import Enum

from autoexec.engine.context import Engine
from autoexec.engine.launch import launch, step_due
from autoexec.engine.lifecycle import (
    admit_waiting,
    fill_free_slots,
    move_to_running,
    refuse_if_stopped,
    start_admitted,
)
from autoexec.statuses import ExecutionStatus
from autoexec.store import admission as store
from autoexec.store import executions as repo
from autoexec.store.admission import WaitingRun, lock_user
from autoexec.store.executions import ExecutionState
from autoexec.store.transaction import Transaction

S = ExecutionStatus
log = logging.getLogger(__name__)


class Admission(Enum):
    WAITING = "waiting"  # still QUEUED, or refused: nothing to do for now
    STARTED = "started"  # RUNNING, and nothing left for the caller to do
    STEP = "step"  # RUNNING: the caller takes its first orchestrator step


def admit(engine: Engine, graph_exec_id: str) -> bool:
    """Start a QUEUED execution if its user has a free slot for it (older waiting runs come
    first); True if it is RUNNING now, and then the caller takes its first orchestrator step."""
    return _admit(engine, graph_exec_id, launching=False) is Admission.STEP


def start_run(engine: Engine, graph_exec_id: str) -> bool:
    """``admit``, sending the run's starting nodes from the admitting transaction when that is
    all its first step would do (``launch``); True if the caller must still take that step (for
    a run already RUNNING: if that step has something to do, ``step_due``)."""
    return _admit(engine, graph_exec_id, launching=True) is Admission.STEP


def _admit(engine: Engine, graph_exec_id: str, launching: bool) -> Admission:
    with engine.db.session() as session:
        execution = repo.get_execution_state(session, graph_exec_id)
        if execution.status is not S.QUEUED:
            return _already_started(session, execution, launching)
        run, user_id = _waiting(execution), execution.user_id
        if refuse_if_stopped(engine, session, run):
            return Admission.WAITING
        if not run.is_child and not _slot_free(engine, session, user_id):
            log.info("graph execution %s waits for a free slot of user %s", graph_exec_id, user_id)
            return Admission.WAITING
    return _admit_locked(engine, run, user_id, launching)


def _already_started(session: Transaction, execution: ExecutionState, launching: bool) -> Admission:
    if execution.status is not S.RUNNING:
        return Admission.WAITING
    if launching and not step_due(session, execution):
        return Admission.STARTED
    return Admission.STEP


def _slot_free(engine: Engine, session: Transaction, user_id: str) -> bool:
    """Whether the user has a free slot, once every transaction handing slots on has committed.
    If not, the run may wait without holding the lock: each of the user's RUNNING runs ends in
    a transaction that hands its slot on, and that transaction will see this run waiting."""
    store.share_user_lock(session, user_id)
    running = repo.count_running(session, user_id)
    return running < engine.settings.max_concurrent_runs_per_user


def _admit_locked(engine: Engine, run: WaitingRun, user_id: str, launching: bool) -> Admission:
    """Fill the user's free slots, oldest waiting run first, under the user's lock; whether
    ``run`` was among them. If it was not, older runs took the slots, or another transaction
    admitted ``run`` meanwhile and started it."""
    with engine.db.session() as session:
        lock_user(session, user_id)
        if run.is_child:
            mine = run if move_to_running(engine, session, run) else None
        else:
            admitted = {other.id: other for other in admit_waiting(engine, session, user_id)}
            mine = admitted.pop(run.id, None)
            for other in admitted.values():
                start_admitted(engine, session, other)
        if mine is None:
            return Admission.WAITING
        if launching and launch(engine, session, mine):
            return Admission.STARTED
        return Admission.STEP


def _waiting(execution: ExecutionState) -> WaitingRun:
    return WaitingRun(
        execution.id,
        execution.cancel_requested_at,
        execution.parent_execution_id,
        execution.root_execution_id,
        execution.max_run_seconds,
        execution.node_execution_count,
    )


def admit_next(engine: Engine, user_id: str) -> None:
    """Hand the user's free slots to the oldest waiting runs (a recovery path: the transaction
    that ends a run already does it, so this takes the user's lock only if a run waits for a
    free slot)."""
    with engine.db.session() as session:
        if not _slot_free(engine, session, user_id):
            return
        if not store.oldest_waiting(session, user_id, 1):
            return
    with engine.db.session() as session:
        lock_user(session, user_id)
        fill_free_slots(engine, session, user_id)
