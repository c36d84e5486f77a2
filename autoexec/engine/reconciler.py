"""The reconciler: one pass that finds executions nothing is moving on and resumes them.

Every step of the engine is driven by a message; a message lost before it reached a worker
(a publish that never arrived, a crash between a commit and its send) leaves work nobody owns.
A pass judges "no progress" from the database only — the execution's ``updated_at``, its node
executions' ``updated_at`` and its latest output's ``created_at`` — and then:

1. a QUEUED execution unchanged for ``older_than_seconds``: its ``run_graph`` is published again
   (admission decides; a duplicate is harmless), at most as many per user as the user has free
   slots, so a backlog waiting for slots is not re-sent every pass (a child execution, which
   takes no slot, always);
2. a RUNNING execution with no progress: its QUEUED node executions are sent again under their
   stored task ids (a copy of a message that did arrive is refused by the node's claim), and
   one orchestrator step is woken to deliver what is undelivered and finalize a finished run.
   A run whose only active node executions are RUNNING is left alone: those recover through
   the broker's redelivery of their unacknowledged messages (late acks), or by rule 0;
3. a FAILED or TERMINATED execution that still has QUEUED node executions never sent: those
   (and, for TERMINATED, its INCOMPLETE ones, as a cancel does) end TERMINATED.

4. a child execution that ended while its parent node still waits for it (the process that
   ended it died before resuming the node): the node is resumed as the child's end would have;
5. a child execution still going after its parent ended (the process that ended the parent
   died before stopping its children): it is cancelled, so no child outlives its root.

0. first, a RUNNING node execution unchanged for ``older_than_seconds`` whose task is gone
   (no task renews its mark in Redis: the task ended on an error of the engine's and its
   message was acknowledged, or the message was lost): in a run still going, it is counted
   as a lost worker and its task sent again, which takes it over as a re-delivered message
   would (and fails it past AUTOEXEC_MAX_WORKER_LOSSES); in an ended run it ends TERMINATED.
   A live task whose mark was missed is superseded, never recorded twice: a node's end is
   recorded only by the attempt that owns it.

Every query is bounded by ``limit`` rows; what is left is found by the next pass.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta

from autoexec.clock import utcnow
from autoexec.engine.cancellation import cancel_execution
from autoexec.engine.context import Engine
from autoexec.engine.inline import publish, send
from autoexec.engine.lifecycle import UNSTARTED_NODES, end_run
from autoexec.engine.suspensions.child_run import resume_parent
from autoexec.engine.suspensions.registry import KINDS
from autoexec.statuses import TERMINAL, ExecutionStatus
from autoexec.store import executions as repo
from autoexec.store import suspended
from autoexec.store.children import ended_children_of_suspended_nodes, orphaned_children
from autoexec.store.transaction import Transaction
from autoexec.store.transitions import count_lost_task, transition_node

S = ExecutionStatus
log = logging.getLogger(__name__)

DEFAULT_LIMIT = 500
ENDED_WITH_NODES_LEFT = "ended by the reconciler: its graph execution had already ended"
LOST_IN_ENDED_RUN = (
    "ended by the reconciler: its task was gone and its graph execution had already ended"
)
_RUNNING = frozenset({S.RUNNING})


@dataclass
class Report:
    """What one pass did."""

    republished_runs: int = 0  # QUEUED runs whose run_graph was sent again
    waiting_runs: int = 0  # QUEUED runs left waiting: their user has no free slot
    resent_nodes: int = 0  # QUEUED node executions noted as sent, sent again
    dispatched_nodes: int = 0  # QUEUED node executions never sent, sent now
    woken_runs: int = 0  # RUNNING runs given an orchestrator step
    owned_runs: int = 0  # RUNNING runs left to their RUNNING node executions
    lost_nodes_resent: int = 0  # RUNNING node executions whose task was gone, sent again
    lost_nodes_terminated: int = 0  # RUNNING node executions of ended runs, task gone
    repaired_nodes: int = 0  # suspended nodes finished from what the database records
    terminated_nodes: int = 0  # QUEUED/INCOMPLETE node executions of ended runs
    resumed_parents: int = 0  # suspended nodes resumed by the end of their child execution
    cancelled_orphans: int = 0  # child executions still going after their parent ended

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @property
    def acted(self) -> bool:
        left_alone = {"waiting_runs", "owned_runs"}
        return any(n for name, n in self.as_dict().items() if name not in left_alone)

    def lines(self) -> list[str]:
        return [f"{name.replace('_', ' ')}: {n}" for name, n in self.as_dict().items()]

    def __str__(self) -> str:
        return ", ".join(self.lines())


def reconcile(engine: Engine, older_than_seconds: float, limit: int = DEFAULT_LIMIT) -> Report:
    """One pass over executions with no progress for ``older_than_seconds``."""
    before = utcnow() - timedelta(seconds=older_than_seconds)
    report = Report()
    recover_lost_nodes(engine, before, limit, report)
    republish_queued_runs(engine, before, limit, report)
    resume_running_runs(engine, before, limit, report)
    repair_waiting_runs(engine, before, limit, report)
    end_nodes_of_ended_runs(engine, limit, report)
    resume_parents_of_ended_children(engine, limit, report)
    cancel_orphaned_children(engine, limit, report)
    if report.acted:
        log.warning("reconciler: %s", report)
    return report


def recover_lost_nodes(engine: Engine, before: datetime, limit: int, report: Report) -> None:
    """Rule 0: RUNNING node executions with no task left."""
    with engine.db.session() as session:
        stale = repo.stale_running_nodes(session, before, limit)
    ids = [(node.task.graph_exec_id, node.task.node_exec_id) for node in stale]
    alive = engine.coordinator.nodes_alive(ids)  # Redis down: nothing is judged lost
    for node, is_alive in zip(stale, alive, strict=True):
        if not is_alive:
            _recover_lost_node(engine, node, report)


def _recover_lost_node(engine: Engine, node: repo.RunningNode, report: Report) -> None:
    task = node.task
    with engine.db.session() as session:
        if node.run_status in TERMINAL:
            ended = transition_node(
                session,
                task.node_exec_id,
                S.TERMINATED,
                allowed_from=_RUNNING,
                attempt_is=node.attempt,
                error=LOST_IN_ENDED_RUN,
            )
            report.lost_nodes_terminated += int(ended)
            return
        counted = count_lost_task(session, task.node_exec_id, node.attempt)
    if counted:
        log.warning(
            "reconciler: node execution %s (%s) of %s had no task left; sent again",
            task.node_exec_id,
            task.node_id,
            task.graph_exec_id,
        )
        engine.dispatcher.execute_node(replace(task, rerun=True))
        report.lost_nodes_resent += 1


def republish_queued_runs(engine: Engine, before: datetime, limit: int, report: Report) -> None:
    with engine.db.session() as session:
        by_user: dict[str, list[str]] = defaultdict(list)
        chosen: list[str] = []
        for run in repo.stale_queued_runs(session, before, limit):
            if run.is_child:
                chosen.append(run.id)  # admitted without a slot: never waits for one
            else:
                by_user[run.user_id].append(run.id)
        for user_id, run_ids in by_user.items():
            free = max(_free_slots(engine, session, user_id), 0)
            chosen += run_ids[:free]
            report.waiting_runs += len(run_ids[free:])
    for graph_exec_id in chosen:
        engine.dispatcher.run_graph(graph_exec_id)
        report.republished_runs += 1


def _free_slots(engine: Engine, session: Transaction, user_id: str) -> int:
    return engine.settings.max_concurrent_runs_per_user - repo.count_running(session, user_id)


def resume_running_runs(engine: Engine, before: datetime, limit: int, report: Report) -> None:
    with engine.db.session() as session:
        run_ids = repo.stale_running_runs(session, before, limit)
    for graph_exec_id in run_ids:
        resume_run(engine, graph_exec_id, report)


def resume_run(engine: Engine, graph_exec_id: str, report: Report) -> None:
    """Send the run's QUEUED node executions again and wake one orchestrator step."""
    with engine.db.session() as session:
        sent_before = repo.queued_tasks(session, graph_exec_id)
        never_sent = repo.claim_task_ids(session, graph_exec_id)
        waiting = suspended.suspended_nodes(session, graph_exec_id)
        owned = not sent_before and not never_sent and repo.has_running_node(session, graph_exec_id)
    if owned:
        report.owned_runs += 1
        return
    send(engine, sent_before)
    publish(engine, never_sent)
    for node_exec_id in waiting:  # e.g. a fan-out whose chord was lost with Redis
        report.repaired_nodes += KINDS.repair(engine, node_exec_id)
    engine.wake(graph_exec_id, force=True)
    report.resent_nodes += len(sent_before)
    report.dispatched_nodes += len(never_sent)
    report.woken_runs += 1
    log.info(
        "reconciler: graph execution %s resumed (%d node executions sent again, %d sent)",
        graph_exec_id,
        len(sent_before),
        len(never_sent),
    )


def repair_waiting_runs(engine: Engine, before: datetime, limit: int, report: Report) -> None:
    """WAITING executions (every node suspended) with no progress: each suspended node's kind
    finishes what the database says is finished (a fan-out whose chord was lost)."""
    with engine.db.session() as session:
        runs = repo.stale_runs(session, S.WAITING, before, limit)
        waiting = [(run, node) for run in runs for node in suspended.suspended_nodes(session, run)]
    for graph_exec_id, node_exec_id in waiting:
        if KINDS.repair(engine, node_exec_id):
            report.repaired_nodes += 1
            log.info("reconciler: node execution %s of %s repaired", node_exec_id, graph_exec_id)


def end_nodes_of_ended_runs(engine: Engine, limit: int, report: Report) -> None:
    with engine.db.session() as session:
        for run in repo.ended_runs_with_queued_nodes(session, limit):
            left = UNSTARTED_NODES if run.status is S.TERMINATED else frozenset({S.QUEUED})
            ended = end_run(
                engine,
                session,
                run.id,
                run.status,
                error=ENDED_WITH_NODES_LEFT,
                left=left,
                ended_before=True,
            )
            report.terminated_nodes += 0 if ended is None else ended.terminated_nodes


def resume_parents_of_ended_children(engine: Engine, limit: int, report: Report) -> None:
    with engine.db.session() as session:
        ended = ended_children_of_suspended_nodes(session, limit)
    for child_exec_id in ended:
        if resume_parent(engine, child_exec_id):
            report.resumed_parents += 1


def cancel_orphaned_children(engine: Engine, limit: int, report: Report) -> None:
    with engine.db.session() as session:
        orphans = orphaned_children(session, limit)
    for child_exec_id in orphans:
        log.info("reconciler: child execution %s outlived its parent; cancelling it", child_exec_id)
        cancel_execution(engine, child_exec_id)
        report.cancelled_orphans += 1
