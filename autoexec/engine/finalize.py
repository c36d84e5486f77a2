"""The end of a graph execution (SPEC §3.6, §3.7): final status, stats, outputs."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from autoexec.clock import utcnow
from autoexec.dataflow import FailedNode, unhandled_failures
from autoexec.engine.context import Engine
from autoexec.engine.lifecycle import end_run
from autoexec.engine.suspensions.registry import KINDS
from autoexec.statuses import SUSPENDED, ExecutionStatus
from autoexec.store import executions as repo
from autoexec.store.executions import ExecutionState
from autoexec.store.graphs import load_graph
from autoexec.store.outcomes import NodeOutcome, node_outcomes
from autoexec.store.transaction import Transaction
from autoexec.store.transitions import transition_graph

S = ExecutionStatus
log = logging.getLogger(__name__)


def finalize(engine: Engine, graph_exec_id: str) -> ExecutionStatus | None:
    """Give a finished RUNNING execution its final status and hand its slot on; the status
    applied, if any."""
    with engine.db.session() as session:
        execution = repo.get_execution_state(session, graph_exec_id)
        nodes = node_outcomes(session, graph_exec_id)
        if {node.status for node in nodes} & SUSPENDED:
            return _suspend_run(session, graph_exec_id)
        status, error = _outcome(session, execution, nodes)
        # A halted run (a refused charge) ends the ready nodes it kept back, left INCOMPLETE.
        left = frozenset({S.INCOMPLETE}) if execution.charge_error is not None else frozenset()
        ended = end_run(
            engine,
            session,
            graph_exec_id,
            status,
            error=error,
            stats=lambda: graph_stats(execution, nodes, error),
            left=left,
            user_id=execution.user_id,  # locked as late as can be: it serializes the user's runs
        )
        if ended is None:
            return None
    log.info("graph execution %s ended %s", graph_exec_id, status.value)
    if execution.parent_execution_id is not None:
        resume_parent_of(engine, graph_exec_id)
    return status


def resume_parent_of(engine: Engine, child_exec_id: str) -> None:
    """After the commit that ends a run: what waits for it (a parent's node) resumes."""
    KINDS.after_run_end(engine, child_exec_id)


def _suspend_run(session: Transaction, graph_exec_id: str) -> ExecutionStatus | None:
    """Nothing can run until a suspended node resumes: the run shows REVIEW if a review is
    pending, else WAITING, and keeps its slot.

    A suspended node may resume (from another process) at any moment: under the run's lock,
    taken by every resumption, the run is suspended only if that still leaves no work. Else
    the work under way ends the run, or suspends it, when it is done."""
    repo.get_execution_state(session, graph_exec_id, lock=True)
    if repo.has_pending_work(session, graph_exec_id):
        return None
    suspended = {node.status for node in node_outcomes(session, graph_exec_id)} & SUSPENDED
    if not suspended:
        return None
    status = S.REVIEW if S.REVIEW in suspended else S.WAITING
    if not transition_graph(session, graph_exec_id, status, allowed_from=frozenset({S.RUNNING})):
        return None
    log.info("graph execution %s is suspended in %s", graph_exec_id, status.value)
    return status


def _outcome(
    session: Transaction, execution: ExecutionState, nodes: Sequence[NodeOutcome]
) -> tuple[ExecutionStatus, str | None]:
    """The final status and error (SPEC §3.6); the graph is read only when a node failed, to
    see whether its error was handled."""
    failed = [FailedNode(n.node_id, n.error or "") for n in nodes if n.status is S.FAILED]
    unhandled = []
    if failed:
        graph = load_graph(session, execution.graph_id, execution.graph_version)
        unhandled = unhandled_failures(graph, failed)
    error = unhandled[0].error if unhandled else None
    if execution.cancel_requested_at is not None:
        return S.TERMINATED, error
    if execution.charge_error is not None:  # a charge was refused: the run stopped short
        return S.FAILED, execution.charge_error
    return (S.FAILED if unhandled else S.COMPLETED), error


def graph_stats(
    execution: ExecutionState, nodes: Sequence[NodeOutcome], error: str | None
) -> dict[str, Any]:
    ran = [n for n in nodes if n.status is not S.INCOMPLETE and not n.stats.get("skipped")]
    nodes_walltime = sum(float(n.stats.get("walltime", 0.0)) for n in ran)
    nodes_cputime = sum(float(n.stats.get("cputime", 0.0)) for n in ran)
    started = execution.started_at or execution.created_at
    return {
        "walltime": max((utcnow() - _aware(started)).total_seconds(), 0.0),
        "cputime": nodes_cputime,
        "nodes_walltime": nodes_walltime,
        "nodes_cputime": nodes_cputime,
        "node_count": len(ran),
        "node_error_count": sum(1 for n in ran if n.status is S.FAILED),
        "cost": execution.credits_spent,
        "error": error,
    }


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
