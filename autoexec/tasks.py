"""The Celery tasks: thin adapters from a message to an engine step.

``autoexec.run_graph``      admission, then the first orchestrator step (queue autoexec.graphs)
``autoexec.advance_graph``  one orchestrator step                      (queue autoexec.graphs)
``autoexec.execute_node``   one node execution                         (queue autoexec.nodes)
``autoexec.cancel_graph``   cancel an execution                        (queue autoexec.graphs)
``autoexec.reconcile``      one reconciler pass, scheduled by beat     (queue autoexec.graphs)
``autoexec.fan_out_element`` one element of a fan-out node             (queue autoexec.nodes)
``autoexec.gather_fan_out`` a fan-out's chord callback                  (queue autoexec.graphs)
``autoexec.notify``         deliver one notification                    (queue autoexec.graphs)
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Mapping
from typing import Any

from celery import Task, chord, group
from celery.exceptions import Reject

from autoexec.backoff import backoff_delay
from autoexec.billing import notifications
from autoexec.celery_app import BrokerError, app
from autoexec.coordination import CoordinationError
from autoexec.engine import node_execution, orchestrator, reconciler
from autoexec.engine.admission import start_run
from autoexec.engine.cancellation import cancel_execution
from autoexec.engine.context import Engine
from autoexec.engine.submission import RunRequest, create_execution
from autoexec.engine.suspensions import fan_out
from autoexec.errors import AutoexecError, InputValidationError
from autoexec.store.executions import NodeTask
from autoexec.store.transaction import DatabaseOperationalError

log = logging.getLogger(__name__)


class RequeueingTask(Task[Any, Any]):
    """A task whose retry, when it cannot be published (the broker unreachable for writes),
    requeues the message it runs instead of dropping it: Celery rejects it without requeue
    then, and a node or a step would be left RUNNING with nobody to move it on."""

    def retry(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().retry(*args, **kwargs)
        except Reject as unsent:  # its first argument: the publish error
            reason = unsent.args[0] if unsent.args else None
            log.warning(
                "could not send the retry of task %s (%r); requeued", self.request.id, reason
            )
            raise Reject(reason, requeue=True) from None


# Infrastructure errors (database, Redis, broker) are retried until the service is back:
# giving up would leave an execution RUNNING with nobody to move it on. Each retry waits
# longer, up to a bound that keeps a run from lingering long after the service's return.
RETRY_ON = (DatabaseOperationalError, CoordinationError, BrokerError)
RETRY_BASE_SECONDS = 1.0
RETRY_MAX_SECONDS = 10.0
# Retries a task waits out in its own process (about 8 to 15 s in all) before it sends its
# retry as a new message.
RETRIES_IN_PROCESS = 4


class BackingOffTask(RequeueingTask):
    """A task retried on ``RETRY_ON`` (a service down), each retry after a jittered backoff
    (``backoff_delay``): first in its own process, holding its worker slot, so the worker
    takes no more messages to fail meanwhile and a short outage costs no message at all;
    then as a new message. Celery's autoretry sent every failed message again at once, many
    with no wait (its jitter draws from zero), each to fail again while the service was down:
    a PostgreSQL restart multiplied the node queue."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        for retries in itertools.count():
            try:
                if retries == 0:
                    return super().__call__(*args, **kwargs)
                return self.run(*args, **kwargs)  # within the request the first call set up
            except RETRY_ON as exc:
                if retries >= RETRIES_IN_PROCESS:
                    delay = _retry_delay(self.request.retries)
                    raise self.retry(exc=exc, countdown=delay) from None
                delay = _retry_delay(retries)
                reason = _reason(exc)
                log.warning(
                    "task %s: %s; Retry in %.1f s, in this process", self.request.id, reason, delay
                )
                time.sleep(delay)
                self._run_again_as_retry()

    def _run_again_as_retry(self) -> None:
        """What runs again is a retry, as a retry message would say: counted in ``retries``,
        and not a re-delivery (that would count a worker lost)."""
        request = self.request
        request.retries = (request.retries or 0) + 1
        request.delivery_info = {**(request.delivery_info or {}), "redelivered": False}


def _reason(exc: Exception) -> str:
    """What failed, without the statement and parameters a database error quotes."""
    orig = getattr(exc, "orig", None)
    return repr(orig if orig is not None else exc)


def _retry_delay(retries: int) -> float:
    return backoff_delay(RETRY_BASE_SECONDS, retries, RETRY_MAX_SECONDS)


RETRY_POLICY: dict[str, Any] = {"base": BackingOffTask, "max_retries": None}


class CeleryDispatcher:
    """Sends engine work as Celery tasks."""

    unavailable: tuple[type[Exception], ...] = (BrokerError,)

    def run_graph(self, graph_exec_id: str) -> None:
        run_graph.apply_async(kwargs={"graph_exec_id": graph_exec_id})

    def advance_graph(self, graph_exec_id: str, countdown: float | None = None) -> None:
        advance_graph.apply_async(args=[graph_exec_id], countdown=countdown)

    def execute_node(self, task: NodeTask) -> None:
        args = (task.node_exec_id, task.graph_exec_id)
        # What Flower and task events show: which node and block, never input values.
        shown = (
            f"({task.node_exec_id}, {task.graph_exec_id!r}, "
            f"node={task.node_id!r}, block={task.block_id!r})"
        )
        # A rerun (its node RUNNING, its task gone) is sent as a retry is, so the task knows.
        retries = 1 if task.rerun else 0
        execute_node.apply_async(args=args, task_id=task.task_id, argsrepr=shown, retries=retries)

    def revoke(self, task_ids: list[str]) -> None:
        app.control.revoke(task_ids)

    def fan_out(self, node_exec_id: int, graph_exec_id: str, elements: int) -> None:
        """One chord: an element task per element, then the callback that gathers them; ids
        derived from the node execution, so publishing it again changes nothing."""
        header = group(
            [
                fan_out_element_task.si(node_exec_id, index).set(
                    task_id=fan_out.element_task_id(node_exec_id, index)
                )
                for index in range(elements)
            ],
            task_id=fan_out.chord_id(node_exec_id),
        )
        # The callback's first argument is the elements' outputs: monitoring shows ids only.
        shown = f"(<{elements} element results>, {node_exec_id}, {graph_exec_id!r})"
        callback = gather_fan_out.s(node_exec_id, graph_exec_id).set(argsrepr=shown)
        chord(header)(callback, task_id=fan_out.gather_task_id(node_exec_id))


def get_engine() -> Engine:
    """The engine of this process's runtime, built on first use (after the worker has forked)."""
    return app.runtime.engine(CeleryDispatcher)


def reconfigure(env: Mapping[str, str] | None = None, replace: bool = False) -> Engine:
    """Set ``env``'s ``AUTOEXEC_*`` variables over the environment for this process (over
    those set before, unless ``replace``; the environment itself is not changed) and return the
    engine of the new runtime. For the embedded stack, tests and benchmarks."""
    app.configure(env or {}, replace)
    return get_engine()


# Keyword arguments only: monitoring shows input names, never values, and a value sent
# positionally could not be hidden; such a message is refused as malformed (autoexec.poison).
# A request naming an unknown graph or bad inputs is the caller's error: it fails the task
# (the caller's result says why) without being logged as an unexpected worker error; the
# log line and the task event quote no refused value (``InputValidationError``'s repr,
# ``RunGraphRequest``).
@app.task(
    name="autoexec.run_graph",
    bind=True,
    throws=(AutoexecError,),
    Request="autoexec.task_requests:RunGraphRequest",
    **RETRY_POLICY,
)
def run_graph(
    self: Task[Any, Any],
    *,
    graph_exec_id: str | None = None,
    graph_id: str | None = None,
    user_id: str | None = None,
    inputs: dict[str, Any] | None = None,
    graph_version: int | None = None,
    nodes_input_masks: dict[str, dict[str, Any]] | None = None,
    nodes_to_skip: list[str] | None = None,
    max_run_seconds: float | None = None,
    credit_budget: int | None = None,
) -> str:
    """Start a graph execution, by its id or (graph_id, user_id, inputs); returns its id."""
    engine = get_engine()
    options: dict[str, Any] = {
        "graph_id": graph_id,
        "user_id": user_id,
        "inputs": inputs,
        "graph_version": graph_version,
        "nodes_input_masks": nodes_input_masks,
        "nodes_to_skip": nodes_to_skip,
        "max_run_seconds": max_run_seconds,
        "credit_budget": credit_budget,
    }
    if graph_exec_id is None:
        # The task id makes a re-delivered message find the execution it already created.
        graph_exec_id = create_execution(engine, _run_request(options), exec_id=self.request.id)
    else:
        _refuse_options_with_an_id(options)
    if start_run(engine, graph_exec_id):
        orchestrator.advance(engine, graph_exec_id)
    return graph_exec_id


def _run_request(options: dict[str, Any]) -> RunRequest:
    if not options["graph_id"] or not options["user_id"]:
        raise InputValidationError.quoting_no_value(
            "run_graph needs graph_exec_id, or graph_id and user_id"
        )
    return RunRequest(
        options["graph_id"],
        options["user_id"],
        options["inputs"] or {},
        options["graph_version"],
        options["nodes_input_masks"] or {},
        options["nodes_to_skip"] or [],
        max_run_seconds=options["max_run_seconds"],
        credit_budget=options["credit_budget"],
    )


def _refuse_options_with_an_id(options: dict[str, Any]) -> None:
    """An existing execution was submitted already: options sent along would do nothing."""
    given = sorted(name for name, value in options.items() if value is not None)
    if given:
        raise InputValidationError.quoting_no_value(
            f"run_graph with graph_exec_id starts that execution as submitted; "
            f"leave out {', '.join(given)}"
        )


@app.task(name="autoexec.advance_graph", ignore_result=True, **RETRY_POLICY)
def advance_graph(graph_exec_id: str) -> None:
    """Deliver pending outputs, dispatch ready nodes and finish the execution when done."""
    orchestrator.advance(get_engine(), graph_exec_id)


@app.task(name="autoexec.execute_node", bind=True, ignore_result=True, **RETRY_POLICY)
def execute_node(self: Task[Any, Any], node_exec_id: int, graph_exec_id: str) -> str | None:
    """Run one node execution (``graph_exec_id``, its run, also shows in Flower)."""
    delivery = self.request.delivery_info or {}
    redelivered = bool(delivery.get("redelivered"))
    rerun = redelivered or self.request.retries > 0
    try:
        status = node_execution.execute_node(
            get_engine(),
            int(node_exec_id),
            rerun=rerun,
            worker_lost=redelivered,
            graph_exec_id=str(graph_exec_id),
        )
    except node_execution.RetryNode as retry:
        raise self.retry(countdown=retry.countdown) from None
    return status.value if status else None


@app.task(name="autoexec.fan_out_element", **RETRY_POLICY)
def fan_out_element_task(node_exec_id: int, index: int) -> dict[str, Any]:
    """Run one element of a WAITING fan-out node; its outputs go to the chord's callback."""
    return fan_out.run_element(get_engine(), int(node_exec_id), int(index))


@app.task(name="autoexec.gather_fan_out", ignore_result=True, **RETRY_POLICY)
def gather_fan_out(results: list[dict[str, Any]], node_exec_id: int, graph_exec_id: str) -> None:
    """The fan-out's chord callback: the node yields the gathered outputs once."""
    fan_out.gather(get_engine(), results, int(node_exec_id), graph_exec_id)


# A task callable by name from any app must not bypass the user scope: the caller names the
# execution's owner, and a wrong or missing one is refused (the task fails, saying why).
@app.task(name="autoexec.cancel_graph", throws=(AutoexecError,), **RETRY_POLICY)
def cancel_graph(graph_exec_id: str, user_id: str | None = None) -> str:
    """Cancel an execution of ``user_id``; returns what happened."""
    if not user_id:
        raise InputValidationError.quoting_no_value(
            "autoexec.cancel_graph needs user_id, the owner of the execution: "
            "send kwargs={'graph_exec_id': ..., 'user_id': ...}"
        )
    return cancel_execution(get_engine(), graph_exec_id, user_id)


@app.task(name="autoexec.reconcile", throws=(AutoexecError,))
def reconcile(older_than_seconds: float | None = None) -> dict[str, int]:
    """One reconciler pass over executions with no progress for ``older_than_seconds``
    (default: AUTOEXEC_RECONCILE_AFTER_SECONDS); returns what it did."""
    if older_than_seconds is not None:
        _check_age(older_than_seconds)
    engine = get_engine()
    if older_than_seconds is None:
        older_than_seconds = engine.settings.reconcile_after_seconds
    return reconciler.reconcile(engine, float(older_than_seconds)).as_dict()


def _check_age(seconds: object) -> None:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds >= 0:
        wanted = "reconcile: older_than_seconds must be a number of seconds, 0 or more"
        raise InputValidationError(f"{wanted}, not {seconds!r}", shown=wanted)


# Ids, a kind and numbers only (monitoring shows them); the task reads the rest. A database
# error is retried a few times; a webhook's failures are retried by new tasks (countdown).
@app.task(
    name=notifications.NOTIFY_TASK,
    ignore_result=True,
    autoretry_for=(DatabaseOperationalError,),
    retry_backoff=True,
    max_retries=5,
)
def notify(
    request: dict[str, str | int | float | None], sink: str | None = None, attempt: int = 0
) -> str:
    """Deliver one notification: log it, hand its webhook POST to a thread; what happened."""
    parsed = notifications.NotificationRequest.model_validate(request)
    return notifications.deliver(
        get_engine(), parsed, sink, int(attempt), send=app.send_notification
    )
