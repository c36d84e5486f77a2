"""The orchestrator step: delivery of outputs, dispatch of ready nodes, finalization.

Each function is a short step over persisted state; none waits for another task. The graph
execution's Redis lock serializes the steps of one execution across the cluster, and the row
lock taken by each delivery transaction keeps a step whose Redis lock expired from repeating it.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime

from autoexec.coordination import CoordinationError, GraphLock, LockLost
from autoexec.engine.admission import admit_next
from autoexec.engine.cancellation import CANCELLED, Stop, stop_execution
from autoexec.engine.context import Engine, run_spec
from autoexec.engine.delivery import deliver_pending
from autoexec.engine.finalize import finalize
from autoexec.engine.inline import infrastructure_errors, publish
from autoexec.engine.limits import arm_deadline_timer, deadline_of
from autoexec.errors import BlockNotRegisteredError
from autoexec.statuses import TERMINAL, ExecutionStatus
from autoexec.store import executions as repo
from autoexec.store.graphs import load_run_graph

S = ExecutionStatus
log = logging.getLogger(__name__)


def advance(engine: Engine, graph_exec_id: str) -> None:
    """Drain what is pending for one graph execution, under its cluster-wide lock."""
    coordinator = engine.coordinator
    lock = coordinator.graph_lock(graph_exec_id, engine.settings.graph_lock_ttl_seconds)
    if not _acquire_or_hand_over(engine, graph_exec_id, lock):
        return
    while True:
        try:
            _drain(engine, graph_exec_id, lock)
        except infrastructure_errors(engine):
            _leave_wake_to_retry(engine, graph_exec_id)
            raise
        finally:
            _release(lock, graph_exec_id)
        # A step that found the lock taken left a note instead of queueing another task.
        if not coordinator.take_missed(graph_exec_id) or not lock.acquire(blocking=False):
            return


def _leave_wake_to_retry(engine: Engine, graph_exec_id: str) -> None:
    """The step cleared the wake-up flag, then failed on a service that is down: its task
    retries, so the flag is set again for the retry to clear. Wake-ups meanwhile coalesce
    into it; otherwise each node task's wake-up during a database outage sent one more step,
    each retrying until the database came back."""
    with contextlib.suppress(CoordinationError):  # Redis down too: wake-ups go out, as before
        engine.coordinator.request_wake(graph_exec_id)


def _acquire_or_hand_over(engine: Engine, graph_exec_id: str, lock: GraphLock) -> bool:
    """Take the graph lock, or leave the work to its owner; True if the lock is ours.

    The note is written before the second try, so either the owner sees it after releasing,
    or the lock is free by the second try. In case the owner died holding the lock, one step
    per lock lifetime is scheduled for when the lock expires.
    """
    if lock.acquire(blocking=False):
        return True
    engine.coordinator.mark_missed(graph_exec_id, 3 * engine.settings.graph_lock_ttl_seconds)
    if lock.acquire(blocking=False):
        return True
    _defer_past_lock(engine, graph_exec_id)
    return False


def _defer_past_lock(engine: Engine, graph_exec_id: str) -> None:
    delay = engine.coordinator.lock_ttl(graph_exec_id) + 0.1
    if engine.coordinator.defer_once(graph_exec_id, delay):
        engine.dispatcher.advance_graph(graph_exec_id, countdown=delay)


def _release(lock: GraphLock, graph_exec_id: str) -> None:
    try:
        lock.release()
    except LockLost:
        log.warning("lock of graph execution %s expired before release", graph_exec_id)


@dataclass(frozen=True)
class Batch:
    """What one delivery transaction found and did."""

    delivered: int
    status: ExecutionStatus
    stop: Stop | None
    user_id: str
    deadline: datetime | None = None
    recorded: int = 0  # outputs written by the delivery itself, still to deliver

    def left_more(self, batch_size: int) -> bool:
        return self.delivered >= batch_size or self.recorded > 0


def _drain(engine: Engine, graph_exec_id: str, lock: GraphLock) -> None:
    while True:
        engine.coordinator.clear_wake(graph_exec_id)
        batch = _deliver_or_stop(engine, graph_exec_id)
        if batch.status is not S.RUNNING or batch.stop is not None:
            _stopped(engine, graph_exec_id, batch)
            return
        arm_deadline_timer(engine, graph_exec_id, batch.deadline)
        dispatch_ready(engine, graph_exec_id)
        if not batch.left_more(engine.settings.delivery_batch_size):
            break
        lock.reacquire()
    if _finished(engine, graph_exec_id):
        finalize(engine, graph_exec_id)


def _deliver_or_stop(engine: Engine, graph_exec_id: str) -> Batch:
    try:
        return _deliver_batch(engine, graph_exec_id)
    except BlockNotRegisteredError as exc:
        # Nothing was delivered (the transaction rolled back), and nothing will be until a
        # worker that has the block runs this step: the run cannot go on.
        log.error("graph execution %s: %s", graph_exec_id, exc)
        stop = Stop(S.FAILED, str(exc), missing_block_node=exc.node_id)
        return Batch(0, S.RUNNING, stop, "")


def _stopped(engine: Engine, graph_exec_id: str, batch: Batch) -> None:
    """A step found the execution not to go on: enforce a stored cancel request or a limit,
    and hand on any free slot of the user a run waits for (the end of a run hands its slot on
    in its own commit; this covers slots freed otherwise, e.g. by a raised limit)."""
    if batch.stop is not None and batch.status not in TERMINAL:
        stop_execution(engine, graph_exec_id, batch.stop)
    elif batch.status in TERMINAL:
        admit_next(engine, batch.user_id)


def _deliver_batch(engine: Engine, graph_exec_id: str) -> Batch:
    """Deliver the oldest undelivered outputs in one transaction, counting the node
    executions they make ready, unless the execution must stop."""
    with engine.db.session() as session:
        execution = repo.get_execution_state(session, graph_exec_id, lock=True)
        if execution.cancel_requested_at is not None:
            return Batch(0, execution.status, CANCELLED, execution.user_id)
        if execution.status is not S.RUNNING:
            return Batch(0, execution.status, None, execution.user_id)
        graph = load_run_graph(session, execution.id, execution.graph_id, execution.graph_version)
        spec = run_spec(engine, graph, execution)
        pending = repo.undelivered_outputs(
            session, graph_exec_id, engine.settings.delivery_batch_size
        )
        delivered = deliver_pending(engine, session, execution, spec, pending)
        return Batch(
            len(pending),
            S.RUNNING,
            delivered.stop,
            execution.user_id,
            deadline_of(execution),
            delivered.recorded,
        )


def dispatch_ready(engine: Engine, graph_exec_id: str) -> None:
    """Send every QUEUED, not yet dispatched node execution to the node queue."""
    with engine.db.session() as session:
        jobs = repo.claim_task_ids(session, graph_exec_id)
    publish(engine, jobs)


def _finished(engine: Engine, graph_exec_id: str) -> bool:
    with engine.db.session() as session:
        return not repo.has_pending_work(session, graph_exec_id)
