"""Inline orchestration: a node task delivers its own outputs and sends its successors.

The transaction that records a node's outputs (and its end) takes the graph execution's row
lock, delivers those outputs, queues the node executions they make ready and claims their task
ids (ids that name the node execution sending them); after the commit the task publishes them
itself. So a sequential node costs one broker hop
and no ``advance_graph`` step. The row lock, not the Redis graph lock, keeps this path and an
orchestrator step from delivering the same outputs twice: each reads what is undelivered only
once it holds the lock. Whatever this path leaves (a stop to enforce, an output it could not
deliver, successors a crash kept from being published) is left to ``advance_graph``, which a
re-delivered node task wakes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from autoexec.coordination import CoordinationError
from autoexec.dataflow import RunSpec
from autoexec.engine.cancellation import Stop, stop_execution
from autoexec.engine.context import Engine, run_spec
from autoexec.engine.delivery import deliver_pending
from autoexec.engine.finalize import finalize
from autoexec.errors import BlockNotRegisteredError
from autoexec.hooks import NodeRef
from autoexec.statuses import TERMINAL, ExecutionStatus
from autoexec.store import executions as repo
from autoexec.store.executions import ExecutionState, NodeTask, PendingOutput
from autoexec.store.graphs import load_run_graph
from autoexec.store.transaction import DatabaseOperationalError, Transaction

S = ExecutionStatus


@dataclass(frozen=True)
class Yielded:
    """One output of a node execution, numbered in the order the block yielded it."""

    seq: int
    name: str
    value: Any


# A node's end, applied in the transaction that records its last outputs: given whether the
# run was stopped meanwhile (the node then ends TERMINATED); True if it applied.
End = Callable[[Transaction, bool], bool]


@dataclass
class Flushed:
    """What one recording transaction left to do after its commit."""

    jobs: list[NodeTask] = field(default_factory=list)
    stop: Stop | None = None
    finished: bool = False
    needs_step: bool = False  # something is left for an orchestrator step
    superseded: bool = False  # another attempt owns the node execution: nothing was recorded
    halted: bool = False  # the run was stopped: nothing was recorded, the node must stop


@dataclass(frozen=True)
class NodeAttempt:
    """One attempt at running a node execution."""

    node: NodeRef
    attempt: int

    @property
    def node_exec_id(self) -> int:
        return self.node.node_exec_id

    @property
    def graph_exec_id(self) -> str:
        return self.node.graph_exec_id

    @property
    def node_id(self) -> str:
        return self.node.node_id


def record(
    engine: Engine,
    ref: NodeAttempt,
    outputs: Sequence[Yielded],
    end: End | None = None,
    from_memory: bool = False,
) -> Flushed:
    """Record ``outputs`` (and the end, if ``end`` is given) and deliver them, in one
    transaction; then publish the successors, enforce a limit or finalize the run.

    ``from_memory``: every earlier output of this node execution is delivered, so these are
    delivered as they are and recorded as delivered, with no read back of undelivered rows."""
    with engine.db.session() as session:
        flushed = _record_and_deliver(engine, session, ref, outputs, end, from_memory)
    after_commit(engine, ref.graph_exec_id, flushed, end is not None)
    return flushed


def record_in(
    engine: Engine, session: Transaction, ref: NodeAttempt, outputs: Sequence[Yielded], end: End
) -> Flushed:
    """``record`` in the caller's transaction; the caller calls ``after_commit`` after it."""
    return _record_and_deliver(engine, session, ref, outputs, end, from_memory=False)


def after_commit(engine: Engine, graph_exec_id: str, flushed: Flushed, ended: bool) -> None:
    """Publish the successors and finalize; a stop found by a node that ended is enforced
    here, one found mid-stream is left to the node, which ends the run with its own end."""
    if flushed.stop is not None:
        if ended:
            stop_execution(engine, graph_exec_id, flushed.stop)
        return
    send(engine, flushed.jobs)
    if flushed.finished:
        finalize(engine, graph_exec_id)


def infrastructure_errors(engine: Engine) -> tuple[type[Exception], ...]:
    """Failures of the engine's own services (database, Redis, broker): the task retries until
    they are back; the node does not fail on them."""
    return (DatabaseOperationalError, CoordinationError, *engine.dispatcher.unavailable)


def send(engine: Engine, jobs: Sequence[NodeTask]) -> None:
    """Publish node tasks already noted as sent (see ``resend_sent_by`` for a crash)."""
    for job in jobs:
        engine.dispatcher.execute_node(job)


def publish(engine: Engine, jobs: list[NodeTask]) -> None:
    """Send the successors, then note them sent (a crash in between: ``dispatch_ready``
    sends them again with the same task ids, and a duplicate is refused by its claim)."""
    send(engine, jobs)
    if jobs:
        with engine.db.session() as session:
            repo.mark_dispatched(session, [job.node_exec_id for job in jobs])


def resend_sent_by(engine: Engine, graph_exec_id: str, node_exec_id: int) -> None:
    """Send again the node executions ``node_exec_id`` queued and noted as sent that have not
    started: a node task notes its successors sent in the transaction that queues them and
    publishes them after the commit, so its re-delivered (or retried) task calls this in case
    it died in between. A copy of a message that did go out is refused by the claim of
    whichever comes second.

    Only its own: re-sending every QUEUED execution of its successors made each retried
    task of a stream re-send all its siblings' successors (n retries, n * n messages)."""
    with engine.db.session() as session:
        jobs = repo.tasks_sent_by(session, graph_exec_id, node_exec_id)
    send(engine, jobs)


def _record_and_deliver(
    engine: Engine,
    session: Transaction,
    ref: NodeAttempt,
    outputs: Sequence[Yielded],
    end: End | None,
    from_memory: bool,
) -> Flushed:
    execution = repo.get_execution_state(session, ref.graph_exec_id, lock=True)
    stopped = execution.cancel_requested_at is not None or execution.status in TERMINAL
    if end is not None:
        # The end's conditional UPDATE applies only while this attempt owns the node
        # execution, and locks its row: no separate ownership read is needed.
        if not end(session, stopped):
            return Flushed(needs_step=True)  # taken over: not ours to record
    elif repo.lock_running_attempt(session, ref.node_exec_id) != ref.attempt:
        return Flushed(superseded=True)
    if stopped:
        # Cancelled or ended: a running node records nothing more (it ends TERMINATED).
        return Flushed(needs_step=end is not None, halted=end is None)
    if execution.status is not S.RUNNING:
        # Not started yet (its admission was lost after this node was sent): record, and
        # leave the delivery to the step that starts the run.
        append_outputs(session, ref, outputs)
        return Flushed(needs_step=True)
    graph = load_run_graph(session, execution.id, execution.graph_id, execution.graph_version)
    spec = run_spec(engine, graph, execution)
    if not _blocks_known(spec, ref.node_id):
        append_outputs(session, ref, outputs)
        return Flushed(needs_step=True)  # the step fails the run, naming the block
    limit = engine.settings.delivery_batch_size
    if from_memory and len(outputs) <= limit:
        append_outputs(session, ref, outputs, delivered=True)
        pending = [PendingOutput(None, ref.node_id, o.name, o.value) for o in outputs]
    else:
        append_outputs(session, ref, outputs)
        pending = repo.undelivered_outputs_of_node(session, ref.node_exec_id, limit)
    return _deliver(engine, session, ref, execution, spec, pending, end is not None)


def _deliver(
    engine: Engine,
    session: Transaction,
    ref: NodeAttempt,
    execution: ExecutionState,
    spec: RunSpec,
    pending: Sequence[PendingOutput],
    ended: bool,
) -> Flushed:
    """Deliver the node's undelivered outputs and queue the successors they made ready."""
    delivered = deliver_pending(engine, session, execution, spec, pending, sent_by=ref.node_exec_id)
    if delivered.stop is not None:
        return Flushed(stop=delivered.stop)
    left = delivered.recorded > 0 or len(pending) >= engine.settings.delivery_batch_size
    jobs = delivered.queued
    finished = ended and not left and not jobs
    if finished:
        finished = not repo.has_pending_work(session, ref.graph_exec_id)
    return Flushed(jobs=jobs, finished=finished, needs_step=left)


def append_outputs(
    session: Transaction, ref: NodeAttempt, outputs: Sequence[Yielded], delivered: bool = False
) -> None:
    for output in outputs:
        repo.append_output(
            session, ref.node, output.seq, output.name, output.value, delivered=delivered
        )


def _blocks_known(spec: RunSpec, node_id: str) -> bool:
    """Every block a delivery from ``node_id`` looks up is registered here."""
    try:
        spec.block_of(spec.graph.node(node_id))
        for link in spec.graph.links_from.get(node_id, []):
            spec.block_of(spec.graph.node(link.sink_id))
    except BlockNotRegisteredError:
        return False
    return True
