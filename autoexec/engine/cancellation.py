"""Stopping a graph execution before it ends by itself: a cancel (SPEC §7) ends it TERMINATED,
a run limit or a missing block ends it FAILED. Both go the same way: end the execution, mark
what is left TERMINATED and hand the user's slot on (durably, in one transaction, first), then
flag the node tasks to stop and revoke them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autoexec.coordination import CoordinationError
from autoexec.engine.admission import admit_next
from autoexec.engine.context import Engine
from autoexec.engine.finalize import graph_stats, resume_parent_of
from autoexec.engine.lifecycle import STOPPED_NODES, end_run
from autoexec.engine.suspensions.registry import KINDS
from autoexec.statuses import TERMINAL, ExecutionStatus
from autoexec.store import executions as repo
from autoexec.store.children import active_children, descendants
from autoexec.store.outcomes import node_outcomes
from autoexec.store.transaction import Transaction

S = ExecutionStatus
log = logging.getLogger(__name__)


# The run's stat naming the node whose block a worker lacked, when that stopped the run.
MISSING_BLOCK_NODE = "missing_block_node"


@dataclass(frozen=True)
class Stop:
    """How a stopped execution ends: its final status and the reason, stored as its error.
    ``missing_block_node``: the node whose block the stopping worker lacks, when that is why
    (an input for it arrived, but no execution of it could be made)."""

    status: ExecutionStatus
    reason: str
    missing_block_node: str | None = None


CANCELLED = Stop(S.TERMINATED, "cancelled")


def cancel_execution(engine: Engine, graph_exec_id: str, user_id: str | None = None) -> str:
    """Cancel ``graph_exec_id``; returns a sentence saying what happened."""
    with engine.db.session() as session:
        owner, status = repo.owner_and_status(session, graph_exec_id, user_id)
    if status in TERMINAL:
        admit_next(engine, owner)  # any slot free with runs waiting (e.g. a raised limit)
        return f"graph execution {graph_exec_id} already ended {status.value}"
    with engine.db.session() as session:
        _request_cancel(session, [graph_exec_id])
        # Read after the request: a child written meanwhile by a node of this run committed
        # first (it held the row), and a node suspending later sees the request instead.
        _request_cancel(session, descendants(session, graph_exec_id))
    if stop_execution(engine, graph_exec_id, CANCELLED):
        return f"graph execution {graph_exec_id} cancelled"
    return f"graph execution {graph_exec_id} ended before it could be cancelled"


def _request_cancel(session: Transaction, graph_exec_ids: list[str]) -> None:
    """Store the cancel request first: every descendant is marked before any run stops, so no
    child's end can resume a node of a run being cancelled, and none can start."""
    if not graph_exec_ids:
        return
    repo.request_cancel(session, graph_exec_ids)


def stop_execution(
    engine: Engine,
    graph_exec_id: str,
    stop: Stop,
    record: Callable[[Transaction], object] | None = None,
) -> bool:
    """End an execution as ``stop`` says; True if this call ended it.

    ``record`` writes the stopping node's own outcome in the transaction that ends the run, so
    no crash can leave the one without the other. The run is ended before the node tasks are
    told to stop: a stop flag never outlives a stop that failed, and a retried call, finding
    the run ended, only sends the signals again.
    """
    log.info("stopping graph execution %s: %s", graph_exec_id, stop.reason)
    ended = _end(engine, graph_exec_id, stop, record)
    _flag_stop(engine, graph_exec_id)
    _revoke_in_flight(engine, graph_exec_id)
    if ended:
        _stop_children(engine, graph_exec_id)
        resume_parent_of(engine, graph_exec_id)
    return ended


def _stop_children(engine: Engine, graph_exec_id: str) -> None:
    """A child cannot outlive its parent (SPEC §7): each child still going is cancelled, and
    its own stop cancels its children."""
    with engine.db.session() as session:
        children = list(active_children(session, graph_exec_id))
        _request_cancel(session, children)
    for child in children:
        stop_execution(engine, child, CANCELLED)


def _flag_stop(engine: Engine, graph_exec_id: str) -> None:
    """Tell running nodes through Redis (within 0.5 s); if Redis is down they find the stop in
    the database, which is the truth, within 2 s: the stop has happened either way. So Redis
    down costs this call one short try, then nothing for a while (``Coordinator.stop_path``)."""
    try:
        engine.coordinator.request_stop(graph_exec_id)
    except CoordinationError:
        log.warning("could not flag the stop of %s in Redis", graph_exec_id, exc_info=True)


def _revoke_in_flight(engine: Engine, graph_exec_id: str) -> None:
    with engine.db.session() as session:
        task_ids = repo.live_node_task_ids(session, graph_exec_id)
        task_ids += KINDS.task_ids(session, graph_exec_id)
    if not task_ids:
        return
    try:
        engine.dispatcher.revoke([t for t in task_ids if t])
    except Exception:
        # Revocation only speeds things up: node tasks also check the stop flag.
        log.warning("could not revoke the tasks of %s", graph_exec_id, exc_info=True)


def _end(
    engine: Engine, graph_exec_id: str, stop: Stop, record: Callable[[Transaction], object] | None
) -> bool:
    """End the execution as ``stop`` says, with the stopping node's outcome (``record``), in
    one transaction (``end_run``: what it left ends TERMINATED, charges of what never started
    are refunded, its slot is handed on); True if this call ended it."""
    with engine.db.session() as session:
        user_id = repo.get_execution_state(session, graph_exec_id).user_id
        ended = end_run(
            engine,
            session,
            graph_exec_id,
            stop.status,
            error=stop.reason,
            stats=lambda: _stop_stats(session, graph_exec_id, stop),
            left=STOPPED_NODES,
            record=record,
            user_id=user_id,
        )
        return ended is not None


def _stop_stats(session: Transaction, graph_exec_id: str, stop: Stop) -> dict[str, Any]:
    execution = repo.execution_with_fresh_spend(session, graph_exec_id)
    outcomes = node_outcomes(session, graph_exec_id)
    stats = graph_stats(execution, outcomes, stop.reason)
    missing = stop.missing_block_node
    if missing is not None and all(outcome.node_id != missing for outcome in outcomes):
        # The node failed for want of its block, though no execution of it could be made.
        stats[MISSING_BLOCK_NODE] = missing
        stats["node_error_count"] += 1
    return stats
