"""One node execution on a worker: claim it, run its block, persist each output as it is
yielded (waking the orchestrator at once, so downstream nodes start while this one streams),
and record the end with its stats."""

from __future__ import annotations

import functools
import json
import logging
import time
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from autoexec.backoff import backoff_delay
from autoexec.block_run.failures import (
    UNEXPECTED_ERROR,
    Ending,
    SupersededError,
    ending_of,
    error_message,
    log_failure,
    unexpected_error_type,
)
from autoexec.block_run.run import NodeLogAdapter, OutputCheck, RunningBlock, run_logger
from autoexec.block_run.watch import StopWatch, database_due
from autoexec.blocks.base import ERROR_PIN, Block, RunContext, Suspend
from autoexec.clock import utcnow
from autoexec.coordination import CoordinationError
from autoexec.engine import inline
from autoexec.engine.cancellation import CANCELLED, Stop, stop_execution
from autoexec.engine.context import Engine
from autoexec.engine.inline import NodeAttempt, Yielded, infrastructure_errors, resend_sent_by
from autoexec.engine.limits import deadline_of, limit_stop
from autoexec.engine.output_buffer import OutputBuffer
from autoexec.engine.suspensions.registry import KINDS, Launch
from autoexec.errors import BlockNotRegisteredError, ExecutionStoppedError, WorkerLostError
from autoexec.graph import Graph, Node
from autoexec.hooks import NodeRef
from autoexec.statuses import SUSPENDED, TERMINAL, ExecutionStatus
from autoexec.store import executions as repo
from autoexec.store.credits import NodeCharge
from autoexec.store.graphs import load_run_graph, read_run_graph
from autoexec.store.transaction import Transaction
from autoexec.store.transitions import (
    move_node,
    note_node_retry,
    restart_running_node,
    set_node_stats,
    start_queued_node,
    transition_node,
)
from autoexec.timeouts import Clock, time_limit

S = ExecutionStatus
log = logging.getLogger("autoexec.node")


MAX_RETRY_BACKOFF = 60.0


class RetryNode(Exception):
    """The node failed transiently with retries left: its task runs it again after
    ``countdown`` seconds (a new message, so the worker slot is free meanwhile)."""

    def __init__(self, countdown: float) -> None:
        super().__init__(f"retry in {countdown:g} s")
        self.countdown = countdown


@dataclass(frozen=True)
class NodeJob:
    node_exec_id: int
    graph_exec_id: str
    graph_id: str
    graph_version: int
    node_id: str
    block_id: str
    user_id: str
    inputs: dict[str, Any]
    attempt: int
    deadline: datetime | None = None
    worker_losses: int = 0
    time_limit: float | None = None
    retries: tuple[dict[str, Any], ...] = ()  # the earlier runs that failed transiently
    launch: Launch | None = None  # what runs instead of the block (a suspension kind's)
    cost: int = 0  # credits charged before it was dispatched


@dataclass
class Outcome:
    status: ExecutionStatus
    error: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    # Set when this node's end must also end the whole execution.
    stop: Stop | None = None
    # Set when the block failed with a transient error and has retries left: run again then.
    retry_in: float | None = None
    # Set when the block suspended its node (status REVIEW or WAITING): what it waits for.
    suspension: Suspend | None = None
    metered: bool = True  # the run's usage is charged with its end


def node_logger(job: NodeJob) -> NodeLogAdapter:
    return run_logger(
        job.user_id, job.graph_id, job.graph_exec_id, job.node_id, job.node_exec_id, job.block_id
    )


def execute_node(
    engine: Engine,
    node_exec_id: int,
    rerun: bool = False,
    worker_lost: bool = False,
    graph_exec_id: str | None = None,
) -> ExecutionStatus | None:
    """Run one node execution to its end; None if it was not ours to run.

    ``rerun``: the message may have been handled before (re-delivered or retried);
    ``worker_lost``: it was re-delivered, so a RUNNING node execution lost its worker;
    ``graph_exec_id``: its run, as the task message says (see ``claim``)."""
    claimed = claim(engine, node_exec_id, rerun, worker_lost, graph_exec_id)
    if isinstance(claimed, Refused):
        _refused(engine, node_exec_id, claimed, rerun, worker_lost)
        return None
    if rerun and claimed.attempt > 1:
        # A crash may have kept the last run from sending successors it had queued. A node
        # execution claimed for its first run (a message retried while the database was
        # down) sent nothing yet: it re-sends nothing and wakes no step.
        resend_sent_by(engine, claimed.graph_exec_id, claimed.node_exec_id)
        engine.wake(claimed.graph_exec_id, force=worker_lost)
    run = _Run(engine, claimed)
    try:
        return _run_and_record(run, force_wake=worker_lost)
    except RetryNode:
        raise
    except Exception as exc:
        if isinstance(exc, infrastructure_errors(engine)):
            raise  # the task retries until the service is back
        return _fail_unrecorded(run, exc)


def _run_and_record(run: _Run, force_wake: bool) -> ExecutionStatus | None:
    """Run the node's block and record its end; what it ended with, None if not ours."""
    engine, claimed = run.engine, run.job
    try:
        outcome = run_job(run)
    finally:
        run.watch.finish()
        run.buffer.closed = True  # set again under its lock below; stops the timer's flushes
    if outcome is None:
        return None
    # The watch is over: the mark covers recording the end, and a retry's wait.
    note_alive(engine, claimed.graph_exec_id, claimed.node_exec_id, outcome.retry_in)
    if outcome.retry_in is not None:
        _note_retry(engine, claimed, outcome)  # the buffer's last outputs come again
        raise RetryNode(outcome.retry_in)
    end = functools.partial(_record, engine=engine, job=claimed, outcome=outcome)
    if outcome.stop is not None:
        # One transaction ends the run and records this node: a re-delivery after a crash
        # finds the run ended, never a FAILED node in a run that goes on.
        stop_execution(engine, claimed.graph_exec_id, outcome.stop, run.buffer.closing(end))
        return outcome.status
    return _recorded(run, outcome, end, force_wake)


def _recorded(run: _Run, outcome: Outcome, end: inline.End, force_wake: bool) -> ExecutionStatus:
    """``outcome`` recorded with the outputs left in the buffer, and what follows sent;
    ``force_wake``: the wake-up flag may be one a lost worker set and never acted on."""
    engine, claimed = run.engine, run.job
    flushed = run.buffer.close(end)
    if outcome.suspension is not None:
        KINDS.of(outcome.suspension).after_commit(engine, run.node, outcome.suspension)
    if run.buffer.step_owed:
        # A failed flush may have queued successors after its commit without sending them.
        resend_sent_by(engine, claimed.graph_exec_id, claimed.node_exec_id)
    if flushed.needs_step:
        engine.wake(claimed.graph_exec_id, force=force_wake)
    return outcome.status


def _fail_unrecorded(run: _Run, exc: Exception) -> ExecutionStatus | None:
    """An error of the engine's own that is not a service being down (a value the database
    refused, a bug) hit the run or its recording: the node fails with it, its unrecorded
    outputs dropped (they would fail again), rather than staying RUNNING with no task left
    to end it. Raises if even that cannot be recorded (the reconciler ends the node then);
    recording checks the attempt, so a run taken over meanwhile records nothing."""
    error = f"the engine could not record the node's run: {error_message(exc)}"
    run.logger.exception("failed: %s", error)
    with run.buffer.lock:
        run.buffer.items[:] = [Yielded(run.seq, ERROR_PIN, error)]
    stats = {**run.stats(error), UNEXPECTED_ERROR: type(exc).__name__}
    outcome = Outcome(S.FAILED, error, stats)
    end = functools.partial(_record, engine=run.engine, job=run.job, outcome=outcome)
    return _recorded(run, outcome, end, force_wake=False)


def note_alive(
    engine: Engine, graph_exec_id: str, node_exec_id: int, wait: float | None = None
) -> None:
    """Mark the node execution as handled by this task (for ``wait`` seconds more): the
    reconciler re-runs a RUNNING node without a mark, whose task is gone. A mark Redis could
    not take costs a re-run at worst: the run goes on."""
    seconds = engine.coordinator.NODE_ALIVE_TTL_SECONDS + (wait or 0)
    try:
        engine.coordinator.note_node_alive(graph_exec_id, node_exec_id, seconds)
    except CoordinationError:
        log.warning("could not mark node execution %s as alive", node_exec_id, exc_info=True)


def _refused(
    engine: Engine, node_exec_id: int, refused: Refused, rerun: bool, worker_lost: bool
) -> None:
    """The refused message may be the re-delivery of a run killed after it ended but before
    it sent its successors or what its suspension sends (a child's run, a fan-out), or
    finalized the run: do what is left (its own successors only). A first message refused is
    a copy whose original came first (a node ended or running): that one's task sees to its
    run, so the copy wakes no step, unless its claim ended the node in a stopped run."""
    if rerun:
        resend_sent_by(engine, refused.graph_exec_id, node_exec_id)
    if rerun and refused.status in SUSPENDED:
        KINDS.send_again(engine, node_exec_id)
    if rerun or refused.status is S.TERMINATED:
        engine.wake(refused.graph_exec_id, force=worker_lost)


def _record(
    session: Transaction, stopped: bool, engine: Engine, job: NodeJob, outcome: Outcome
) -> bool:
    """The node's end, or its suspension; a node whose run was stopped meanwhile ends
    TERMINATED."""
    moved = move_node(
        session,
        job.node_exec_id,
        S.TERMINATED if stopped else outcome.status,
        allowed_from=frozenset({S.RUNNING}),
        attempt_is=job.attempt,
        stats=outcome.stats,
        error=None if stopped else outcome.error,
    )
    if moved is not None and outcome.metered:
        _charge_usage(engine, session, job, outcome.stats)
    if moved is not None and not stopped and outcome.suspension is not None:
        KINDS.of(outcome.suspension).persist(engine, session, moved, outcome.suspension)
    return moved is not None


def _charge_usage(
    engine: Engine, session: Transaction, job: NodeJob, stats: dict[str, Any]
) -> None:
    """Charge the run's BYTE or SECOND cost with its end, and count it in the node's cost."""
    node = NodeCharge(job.node_exec_id, job.node_id, job.block_id, job.inputs)
    used = engine.metering.charge_usage(session, job.graph_exec_id, node, stats)
    if used:
        cost = int(stats.get("cost", 0)) + used
        set_node_stats(session, job.node_exec_id, {**stats, "cost": cost})


def _note_retry(engine: Engine, job: NodeJob, outcome: Outcome) -> None:
    """Record the failed run among the node execution's retries, if this attempt still owns
    it; the node stays RUNNING until the retry takes it over."""
    failed = {"attempt": job.attempt, "error": outcome.error, "at": utcnow().isoformat()}
    stats = {**outcome.stats, "retries": [*job.retries, failed]}
    with engine.db.session() as session:
        note_node_retry(session, job.node_exec_id, job.attempt, stats)


_QUEUED = frozenset({S.QUEUED})


@dataclass(frozen=True)
class Refused:
    """The node execution is not ours to run; ``status`` is why."""

    status: ExecutionStatus
    graph_exec_id: str
    node_id: str


def claim(
    engine: Engine,
    node_exec_id: int,
    rerun: bool,
    worker_lost: bool = False,
    graph_exec_id: str | None = None,
) -> NodeJob | Refused:
    """Move the node execution to RUNNING and load what it needs, or say why not: one
    conditional UPDATE that returns the row when the node is QUEUED in a live run (the
    usual case), else a read of why and the transition that follows from it.

    The claim commits at once, so the run's graph (``graph_exec_id``, from the task) is read
    before it: a failure to read it leaves the node QUEUED for the message's retry or the
    reconciler, not RUNNING with no task to run it."""
    graph = None
    if graph_exec_id is not None:
        # Marked before the claim commits: a RUNNING node never looks lost to the reconciler.
        note_alive(engine, graph_exec_id, node_exec_id)
        with engine.db.session() as session:
            graph = read_run_graph(session, graph_exec_id)
    with engine.db.single_statement() as session:
        started = start_queued_node(session, node_exec_id)
    if started is not None:
        view, losses = started, 0
    else:
        with engine.db.session() as session:
            claimed = _claim_after_all(session, node_exec_id, rerun, worker_lost)
        if isinstance(claimed, Refused):
            return claimed
        view, losses = claimed
    if graph is None or view.graph_exec_id != graph_exec_id:
        note_alive(engine, view.graph_exec_id, node_exec_id)
        with engine.db.session() as session:
            graph = load_run_graph(session, view.graph_exec_id, view.graph_id, view.graph_version)
    return _job(engine, view, losses, graph)


def _job(engine: Engine, view: repo.ClaimView, losses: int, graph: Graph) -> NodeJob:
    """What running the claimed node execution needs."""
    node = graph.nodes_by_id.get(view.node_id)
    return NodeJob(
        node_exec_id=view.node_exec_id,
        graph_exec_id=view.graph_exec_id,
        graph_id=view.graph_id,
        graph_version=view.graph_version,
        node_id=view.node_id,
        block_id=view.block_id,
        user_id=view.user_id,
        inputs=view.input_data or {},
        attempt=view.attempt + 1,
        deadline=deadline_of(view),
        worker_losses=view.worker_losses + losses,
        retries=_retries_of(view),
        time_limit=_time_limit(engine, node, view.block_id),
        launch=KINDS.launch_for(node) if node else None,
        cost=int(view.stats.get("cost", 0)) if view.stats else 0,
    )


def _claim_after_all(
    session: Transaction, node_exec_id: int, rerun: bool, worker_lost: bool
) -> tuple[repo.ClaimView, int] | Refused:
    """The claim when the node execution was not QUEUED in a live run: refuse it (and end it
    if its run is stopped or ended), or take over a RUNNING one whose message came again;
    the view and how many worker losses the take-over adds."""
    view = repo.claim_view(session, node_exec_id)
    if view.cancel_requested_at is not None or view.run_status in TERMINAL:
        transition_node(session, node_exec_id, S.TERMINATED)
        return Refused(S.TERMINATED, view.graph_exec_id, view.node_id)
    attempt = view.attempt + 1
    started = transition_node(
        session, node_exec_id, S.RUNNING, allowed_from=_QUEUED, attempt=attempt
    )
    worker_lost = worker_lost and not _ended_in_retry(view)
    restarted = (
        not started and rerun and restart_running_node(session, node_exec_id, attempt, worker_lost)
    )
    if not started and not restarted:
        log.info("node execution %s is %s; not running it", node_exec_id, view.status)
        return Refused(view.status, view.graph_exec_id, view.node_id)
    return view, 1 if restarted and worker_lost else 0


def _retries_of(view: repo.ClaimView) -> tuple[dict[str, Any], ...]:
    return tuple(view.stats.get("retries", ())) if view.stats else ()


def _ended_in_retry(view: repo.ClaimView) -> bool:
    """The node's last run failed transiently and was noted for a retry: a re-delivered
    message then comes back because the retry could not be sent (``tasks.execute_node``
    requeues it), not because a worker was lost."""
    retries = _retries_of(view)
    return bool(retries) and retries[-1].get("attempt") == view.attempt


def _time_limit(engine: Engine, node: Node | None, block_id: str) -> float | None:
    block = engine.registry.get(block_id) if block_id in engine.registry else None
    return time_limit(node, block, engine.settings.node_timeout_seconds)


class _Run:
    """One node's block run as the node task runs it: its outputs persisted through the output
    buffer as they come, its stop watch, its stats."""

    def __init__(self, engine: Engine, job: NodeJob) -> None:
        self.engine, self.job = engine, job
        self.logger = node_logger(job)
        self.seq = 0
        self.node = NodeRef(
            job.graph_exec_id, job.user_id, job.node_exec_id, job.node_id, job.block_id
        )
        ref = NodeAttempt(self.node, job.attempt)
        self.buffer = OutputBuffer(engine, ref)
        self.clock = Clock(job.node_id, job.time_limit)
        self.watch = StopWatch(engine.timer, self.clock, self.logger, self._stop_found)
        self.output_check = OutputCheck(engine.settings.max_output_bytes)
        self.wall_start = time.perf_counter()
        self.cpu_start = time.thread_time()

    def context(self) -> RunContext:
        job = self.job
        return RunContext(
            user_id=job.user_id,
            graph_id=job.graph_id,
            graph_version=job.graph_version,
            graph_exec_id=job.graph_exec_id,
            node_id=job.node_id,
            node_exec_id=str(job.node_exec_id),
            block_id=job.block_id,
            logger=self.logger,
            is_cancelled=self.stop_requested,
        )

    def emit(self, pin: str, value: Any) -> None:
        """Check an output the block run has not checked (the error, a launch's) and persist it."""
        self.output_check(pin, value)
        self.deliver(pin, value)

    def deliver(self, pin: str, value: Any) -> None:
        """Persist a checked output."""
        self.buffer.add(Yielded(self.seq, pin, value))
        self.seq += 1
        if self.buffer.superseded:
            raise SupersededError()
        if self.buffer.stop is not None or self.buffer.halted:
            # Past a limit (this node stops and ends the run: ``run_job``), or stopped.
            raise ExecutionStoppedError()

    def stop_requested(self) -> bool:
        """What blocks poll as ``is_cancelled``, with no round trip: the execution was
        stopped (the watch found it in Redis or the database), or is past its deadline (a
        step that would stop it may not get a worker slot while this node holds one, so the
        node stops by itself and ends the run: ``_deadline_stop``), or past a limit a flush
        found (the node ends the run with its own end)."""
        return self._stopped_here()

    def _stopped_here(self) -> bool:
        """A stop this process knows of already, with no round trip."""
        return (
            self.past_deadline()
            or self.buffer.stop is not None
            or self.buffer.halted
            or isinstance(self.clock.pending, ExecutionStoppedError)
        )

    def past_deadline(self) -> bool:
        deadline = self.job.deadline
        return deadline is not None and utcnow() >= deadline

    def check_still_ours(self) -> None:
        """At every yield, with no round trip: stop if the run is past its deadline or a
        limit, a flush found it stopped or the node taken over, or the watch found so."""
        if self.buffer.superseded:
            raise SupersededError()
        if self._stopped_here():
            raise ExecutionStoppedError()
        self.clock.check()

    def _stop_found(self, watches: int) -> Exception | None:
        """The stop watch's hook: a stop known here, the run's stop flag, or (every few
        watches, or when Redis fails) the database's word on a stop or a take-over."""
        if self._stopped_here():
            return ExecutionStoppedError()
        try:
            if self.engine.coordinator.stop_requested(self.job.graph_exec_id):
                return ExecutionStoppedError()
            read_database = database_due(watches)
        except CoordinationError:
            read_database = True
        if not read_database:
            return None
        note_alive(self.engine, self.job.graph_exec_id, self.job.node_exec_id)
        with self.engine.db.session() as session:
            current, stopped = repo.running_attempt_and_stop(session, self.job.node_exec_id)
        if current != self.job.attempt:
            return SupersededError()
        return ExecutionStoppedError() if stopped else None

    def stats(self, error: str | None) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "walltime": time.perf_counter() - self.wall_start,
            "cputime": time.thread_time() - self.cpu_start,
            "input_size": len(json.dumps(self.job.inputs, default=str)),
            "output_size": self.output_check.total,
            "error": error,
        }
        if self.job.retries:
            stats["retries"] = list(self.job.retries)
        if self.job.cost:
            stats["cost"] = self.job.cost
        return stats


def run_job(run: _Run) -> Outcome | None:
    """Run the block; the outcome to record, or None if another attempt took over."""
    engine, job = run.engine, run.job
    if job.block_id not in engine.registry:
        return _block_missing(run)
    block = engine.registry.get(job.block_id)
    if job.worker_losses >= engine.settings.max_worker_losses:
        return _failed(run, _lost_too_often(job, engine.settings.max_worker_losses))
    if job.launch is not None:
        return _launched(run, block, job.launch)
    run.logger.info("started")
    run.watch.start()
    running = RunningBlock(block, job.inputs, run.context(), run.clock, run.output_check)
    try:
        suspension = _persisted(run, running)
        if suspension is not None:
            return _suspended(run, suspension)
    except Exception as exc:
        if isinstance(exc, infrastructure_errors(engine)) and exc is not running.raised:
            raise  # the engine's own writes: the task retries until the service is back
        return _outcome_of(run, block, running.ending_of(exc, len(job.retries)), exc)
    if run.buffer.stop is not None:
        return _stopped(run)  # the block saw ``is_cancelled`` and returned early
    run.logger.info("completed with %d output(s)", run.seq)
    return Outcome(S.COMPLETED, None, run.stats(None))


def _persisted(run: _Run, running: RunningBlock) -> Suspend | None:
    """Each output of the block persisted as it comes; the ``Suspend`` that ends it, if any."""
    with closing(running.outputs()) as outputs:
        for item in outputs:
            if isinstance(item, Suspend):
                return item
            run.deliver(*item)
            run.check_still_ours()
    return None


def _outcome_of(
    run: _Run, block: type[Block[Any]], ending: Ending, exc: Exception
) -> Outcome | None:
    """What a run that raised ``exc`` ends with."""
    if ending is Ending.SUPERSEDED:
        run.logger.warning("taken over by another attempt; this run stops")
        return None
    if ending is Ending.STOPPED:
        return _stopped(run)
    if ending is Ending.RETRY:
        return _retry(run, block, exc)
    return _failed(run, exc)


def _retry(run: _Run, block: type[Block[Any]], exc: Exception) -> Outcome:
    error = error_message(exc)
    backoff = backoff_delay(block.retry_backoff_seconds, len(run.job.retries), MAX_RETRY_BACKOFF)
    run.logger.warning(
        "failed transiently (retry %d of %d in %g s): %s",
        len(run.job.retries) + 1,
        block.retries,
        backoff,
        error,
    )
    return Outcome(S.RUNNING, error, run.stats(error), retry_in=backoff)


def _suspended(run: _Run, suspension: Suspend) -> Outcome:
    kind = KINDS.of(suspension)
    suspension = kind.prepare(run.engine, run.node, suspension)
    run.logger.info("suspended in %s", kind.status.value)
    stats = {**run.stats(None), **kind.stats(suspension)}
    return Outcome(kind.status, None, stats, suspension=suspension, metered=kind.meters_run)


def _launched(run: _Run, block: type[Block[Any]], launch: Launch) -> Outcome | None:
    """A suspension kind runs the node instead of its block (a fan-out): what it yields is
    recorded as the block's would be, and a ``Suspend`` suspends the node."""
    try:
        for item in launch(block, run.job.inputs, run.engine):
            if isinstance(item, Suspend):
                return _suspended(run, item)
            run.emit(*item)
    except Exception as exc:
        if isinstance(exc, infrastructure_errors(run.engine)):
            raise
        # not the block's: never retried
        return _outcome_of(run, block, ending_of(exc, block, False, None), exc)
    return Outcome(S.COMPLETED, None, run.stats(None))


def _lost_too_often(job: NodeJob, limit: int) -> WorkerLostError:
    return WorkerLostError(
        f"node {job.node_id!r} ({job.block_id}): the worker running it was lost "
        f"{job.worker_losses} times (killed or crashed mid-run); not run again "
        f"(AUTOEXEC_MAX_WORKER_LOSSES={limit})"
    )


def _stopped(run: _Run) -> Outcome:
    run.logger.info("stopped: the graph execution was cancelled or stopped")
    stop = run.buffer.stop or _deadline_stop(run)
    return Outcome(S.TERMINATED, None, run.stats(None), stop=stop)


def _block_missing(run: _Run) -> Outcome:
    """This worker cannot run the node's block: no worker configured like it could go on with
    the graph either, so the whole execution ends FAILED saying how to register the block."""
    error = str(BlockNotRegisteredError(run.job.block_id, run.job.node_id))
    run.logger.error(error)
    return Outcome(S.FAILED, error, run.stats(error), stop=Stop(S.FAILED, error))


def _deadline_stop(run: _Run) -> Stop | None:
    """When this node stopped because its clock says the run is past its deadline, the node
    ends the run itself: an orchestrator on a host whose clock is behind would not."""
    if not run.past_deadline():
        return None
    with run.engine.db.session() as session:
        execution = repo.get_execution_state(session, run.job.graph_exec_id)
    if execution.cancel_requested_at is not None:
        return CANCELLED
    settings = run.engine.settings
    return limit_stop(execution, settings.max_node_executions_per_run, now=utcnow())


def _failed(run: _Run, exc: Exception) -> Outcome | None:
    error = error_message(exc)
    log_failure(run.logger, exc)
    try:
        run.emit(ERROR_PIN, error)
    except SupersededError:
        run.logger.warning("taken over by another attempt; this run stops")
        return None
    except ExecutionStoppedError:
        pass  # past a limit a flush found: the error is recorded with the end, which ends the run
    stats = run.stats(error)
    unexpected = unexpected_error_type(exc)
    if unexpected is not None:
        stats[UNEXPECTED_ERROR] = unexpected
    return Outcome(S.FAILED, error, stats, stop=run.buffer.stop)
