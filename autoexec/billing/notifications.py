"""Notifications (SPEC §6, §11): ``AGENT_RUN`` when a run ends, ``LOW_BALANCE`` when a charge
takes a balance from at least AUTOEXEC_LOW_BALANCE_THRESHOLD to below it, ``ZERO_BALANCE``
when a charge is refused for lack of credits, ``SYSTEM_ALERT`` when a node fails with an
unexpected error (at most one per block and error type per AUTOEXEC_ALERT_INTERVAL_SECONDS);
sent to the sinks of AUTOEXEC_NOTIFICATION_SINKS (autoexec.billing.notification_sinks).

How one travels:

1. :class:`NotificationHook`, a built-in engine hook, turns committed changes into requests
   (kind, ids and numbers; never a user's values) and, once the transaction has committed,
   sends each as an ``autoexec.notify`` task on the graph queue. It does nothing else.
2. The task (:func:`deliver`) builds the notification, reading a run's outputs from the
   database (cut to AUTOEXEC_NOTIFICATION_MAX_OUTPUT_BYTES); lets a ZERO_BALANCE through once
   per user and graph until a top-up (with Redis down, always); logs it (``log``); hands the
   POST to this process's delivery threads (``webhook``); and returns at once.
3. A failed POST is tried again by a new task with a countdown, doubling from
   AUTOEXEC_NOTIFICATION_WEBHOOK_BACKOFF_SECONDS (with jitter, :mod:`autoexec.backoff`),
   AUTOEXEC_NOTIFICATION_WEBHOOK_RETRIES times.

Every notification's ``id`` is made from what it is about (a ledger row, a refused node
execution, a graph execution), so a repeat carries the same id and a receiver can drop it.
Only top-level runs send ``AGENT_RUN`` (a sub-graph's run is part of its parent's).
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from autoexec.billing.notification_sinks import (
    LOG,
    WEBHOOK,
    Retries,
    Webhook,
    delivery_threads,
    log_notification,
)
from autoexec.block_run.failures import UNEXPECTED_ERROR
from autoexec.coordination import CoordinationError, Coordinator
from autoexec.errors import NotFoundError, NotificationDeliveryError
from autoexec.hooks import (
    BalanceChange,
    ChargeRefused,
    GraphExecutionChange,
    Hook,
    NodeExecutionChange,
)
from autoexec.observability.events import cut_value
from autoexec.settings import Settings
from autoexec.statuses import ExecutionStatus
from autoexec.store import executions as repo
from autoexec.store.credits import CHARGE
from autoexec.store.db import Database
from autoexec.store.tables import GraphExecution, NodeExecution

log = logging.getLogger(__name__)

AGENT_RUN, LOW_BALANCE, ZERO_BALANCE = "AGENT_RUN", "LOW_BALANCE", "ZERO_BALANCE"
SYSTEM_ALERT = "SYSTEM_ALERT"
MAX_ALERT_ERROR_CHARS = 1000
NOTIFY_TASK = "autoexec.notify"
MIN_VALUE_SHARE = 16  # bytes: a cut output value keeps at least this much of its JSON


class NotificationRequest(BaseModel):
    """What an ``autoexec.notify`` message carries: a kind, ids and numbers only."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    id: str
    user_id: str
    at: float  # when it happened, in seconds since the epoch
    graph_id: str | None = None
    graph_exec_id: str | None = None
    node_exec_id: int | None = None
    transaction_id: int | None = None
    balance: int | None = None
    previous_balance: int | None = None
    amount: int | None = None
    threshold: int | None = None
    top_ups: int | None = None
    node_id: str | None = None
    block_id: str | None = None
    error_type: str | None = None

    def message(self) -> dict[str, str | int | float | None]:
        return self.model_dump(exclude_none=True)


# --- which changes notify -------------------------------------------------------------------


def low_balance_crossed(change: BalanceChange, threshold: int) -> bool:
    """A charge took the balance from ``threshold`` or more to below it."""
    return change.kind == CHARGE and change.balance_before >= threshold > change.balance_after


def low_balance_request(change: BalanceChange, threshold: int, at: float) -> NotificationRequest:
    return NotificationRequest(
        kind=LOW_BALANCE,
        id=f"{LOW_BALANCE}:{change.transaction_id}",
        user_id=change.user_id,
        at=at,
        graph_id=change.graph_id,
        graph_exec_id=change.graph_exec_id,
        node_exec_id=change.node_exec_id,
        transaction_id=change.transaction_id,
        balance=change.balance_after,
        previous_balance=change.balance_before,
        amount=-change.amount,
        threshold=threshold,
    )


def zero_balance_request(change: ChargeRefused, at: float) -> NotificationRequest:
    return NotificationRequest(
        kind=ZERO_BALANCE,
        id=f"{ZERO_BALANCE}:{change.graph_exec_id}:{change.node_exec_id}",
        user_id=change.user_id,
        at=at,
        graph_id=change.graph_id,
        graph_exec_id=change.graph_exec_id,
        node_exec_id=change.node_exec_id,
        balance=change.balance,
        top_ups=change.top_ups,
    )


def system_alert_request(change: NodeExecutionChange, at: float) -> NotificationRequest | None:
    """A node that failed with an unexpected error (a bug: not the graph's or its inputs',
    ``node_execution.UNEXPECTED_ERROR``) asks for a SYSTEM_ALERT."""
    error_type = (change.stats or {}).get(UNEXPECTED_ERROR)
    if change.status is not ExecutionStatus.FAILED or not error_type:
        return None
    node = change.node
    return NotificationRequest(
        kind=SYSTEM_ALERT,
        id=f"{SYSTEM_ALERT}:{node.node_exec_id}",
        user_id=node.user_id,
        at=at,
        graph_exec_id=node.graph_exec_id,
        node_exec_id=node.node_exec_id,
        node_id=node.node_id,
        block_id=node.block_id,
        error_type=str(error_type),
    )


def agent_run_request(change: GraphExecutionChange, at: float) -> NotificationRequest:
    return NotificationRequest(
        kind=AGENT_RUN,
        id=f"{AGENT_RUN}:{change.graph_exec_id}",
        user_id=change.user_id,
        at=at,
        graph_id=change.graph_id,
        graph_exec_id=change.graph_exec_id,
    )


class Engine(Protocol):
    """What delivering a notification reads (``autoexec.engine.context.Engine`` has it): named
    here, so that this feature does not import the engine that calls it."""

    @property
    def settings(self) -> Settings: ...
    @property
    def db(self) -> Database: ...
    @property
    def coordinator(self) -> Coordinator: ...


class Sender(Protocol):
    """Sends an ``autoexec.notify`` task (Celery in production)."""

    def __call__(
        self,
        request: NotificationRequest,
        sink: str | None = None,
        attempt: int = 0,
        countdown: float | None = None,
    ) -> None: ...


class NotificationHook(Hook):
    """The built-in hook that sends notifications: one task per notification, after the
    commit of what it is about. LOW_BALANCE and ZERO_BALANCE only with metering on."""

    def __init__(self, send: Sender, settings: Settings) -> None:
        self.on = bool(settings.notification_sink_names)
        self.billing = settings.billing_enabled
        self.threshold = settings.low_balance_threshold
        self.send = send
        self._local = threading.local()  # hooks of concurrent transactions share the instance

    @property
    def _pending(self) -> list[NotificationRequest]:
        pending: list[NotificationRequest] | None = getattr(self._local, "pending", None)
        if pending is None:
            pending = self._local.pending = []
        return pending

    def balance_changed(self, change: BalanceChange) -> None:
        if self.billing and low_balance_crossed(change, self.threshold):
            self._add(low_balance_request(change, self.threshold, time.time()))

    def charge_refused(self, change: ChargeRefused) -> None:
        if self.billing and not change.over_budget:
            self._add(zero_balance_request(change, time.time()))

    def execution_ended(self, change: GraphExecutionChange) -> None:
        self._add(agent_run_request(change, time.time()))

    def node_ended(self, change: NodeExecutionChange) -> None:
        request = system_alert_request(change, time.time())
        if request is not None:
            self._add(request)

    def _add(self, request: NotificationRequest) -> None:
        if self.on:
            self._pending.append(request)

    def committed(self) -> None:
        requests, self._local.pending = self._pending, []
        for request in requests:
            try:
                self.send(request)
            except Exception as exc:
                log.warning("notification %s not sent: %s: %s", request.id, type(exc).__name__, exc)


# --- what a notification says ---------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    """What the sinks get."""

    id: str
    kind: str
    user_id: str
    at: float
    data: dict[str, Any]

    def body(self, attempt: int = 0) -> dict[str, Any]:
        """The JSON a sink sends: the same for every attempt but ``attempt``."""
        return {
            "id": self.id,
            "type": self.kind,
            "user_id": self.user_id,
            "created_at": datetime.fromtimestamp(self.at, UTC).isoformat(),
            "attempt": attempt,
            "data": self.data,
        }


BALANCE_FIELDS = {
    LOW_BALANCE: {
        "balance", "previous_balance", "threshold", "amount", "graph_id", "graph_exec_id",
        "node_exec_id", "transaction_id",
    },
    ZERO_BALANCE: {"balance", "graph_id", "graph_exec_id", "node_exec_id"},
    SYSTEM_ALERT: {"graph_exec_id", "node_exec_id", "node_id", "block_id", "error_type"},
}  # fmt: skip


def build_notification(engine: Engine, request: NotificationRequest) -> Notification | None:
    """The notification ``request`` asks for; None for a sub-graph's run (or one not found)."""
    if request.kind == AGENT_RUN:
        data = agent_run_data(engine, request)
        if data is None:
            return None
    elif request.kind == SYSTEM_ALERT:
        data = {
            **request.model_dump(include=BALANCE_FIELDS[SYSTEM_ALERT]),
            **alert_data(engine, request),
        }
    else:
        data = request.model_dump(include=BALANCE_FIELDS[request.kind])
    return Notification(request.id, request.kind, request.user_id, request.at, data)


def agent_run_data(engine: Engine, request: NotificationRequest) -> dict[str, Any] | None:
    with engine.db.snapshot() as session:
        try:
            execution = repo.get_graph_execution(session, str(request.graph_exec_id))
        except NotFoundError:
            return None
        if execution.parent_execution_id is not None:
            return None
        outputs = repo.graph_outputs_of(session, execution.id)
        return run_summary(execution, outputs, engine.settings.notification_max_output_bytes)


def alert_data(engine: Engine, request: NotificationRequest) -> dict[str, Any]:
    """The failed node's error (cut), read in the task: a task's arguments carry no message."""
    with engine.db.session() as session:
        node = session.get(NodeExecution, request.node_exec_id)
        error = (node.error or "") if node is not None else ""
    return {"error": error[:MAX_ALERT_ERROR_CHARS]}


def run_summary(
    execution: GraphExecution, outputs: dict[str, list[Any]], max_output_bytes: int
) -> dict[str, Any]:
    """An AGENT_RUN's data: how the run ended, what it output, what it cost and took."""
    kept, cut = cut_outputs(outputs, max_output_bytes)
    stats = execution.stats or {}
    return {
        "graph_id": execution.graph_id,
        "graph_version": execution.graph_version,
        "graph_exec_id": execution.id,
        "status": execution.status.value,
        "error": execution.error,
        "outputs": kept,
        "outputs_cut": cut,
        "credits_used": execution.credits_spent,
        "walltime_seconds": stats.get("walltime"),
        "node_count": stats.get("node_count"),
    }


def cut_outputs(outputs: dict[str, list[Any]], max_bytes: int) -> tuple[dict[str, list[Any]], bool]:
    """``outputs`` if their JSON fits in ``max_bytes``; else, and whether it was cut, the first
    values (as many as get ``MIN_VALUE_SHARE`` bytes each), each cut to an even share of
    ``max_bytes`` (a cut value is the start of its JSON text)."""
    if len(json.dumps(outputs, default=str, ensure_ascii=False).encode()) <= max_bytes:
        return outputs, False
    count = sum(len(values) for values in outputs.values())
    kept = max(min(count, max_bytes // MIN_VALUE_SHARE), 1)
    share = max_bytes // kept
    result: dict[str, list[Any]] = {}
    for name, value in _first(outputs, kept):
        result.setdefault(name, []).append(cut_value(value, share)[0])
    return result, True


def _first(outputs: dict[str, list[Any]], count: int) -> Iterator[tuple[str, Any]]:
    pairs = ((name, value) for name, values in outputs.items() for value in values)
    for index, pair in enumerate(pairs):
        if index == count:
            return
        yield pair


# --- delivery (the autoexec.notify task) ----------------------------------------------------


def _unsendable(
    request: NotificationRequest,
    sink: str | None = None,
    attempt: int = 0,
    countdown: float | None = None,
) -> None:
    """What ``deliver`` retries a webhook with when given no sender (the task gives the app's)."""
    raise NotificationDeliveryError(
        f"notification {request.id}: no sender to send a retry with", retry=False
    )


def deliver(
    engine: Engine,
    request: NotificationRequest,
    sink: str | None = None,
    attempt: int = 0,
    send: Sender | None = None,
) -> str:
    """Deliver ``request`` to every sink (or only ``sink``, on a retry); what happened. Never
    waits for a webhook: its POST runs on a delivery thread, which sends the retries."""
    notification = build_notification(engine, request)
    if notification is None:
        return "not sent: a sub-graph's run, or not found"
    if (
        sink is None
        and request.kind == ZERO_BALANCE
        and not first_zero_balance_notice(engine.coordinator, request)
    ):
        log.info(
            "notification %s not sent: ZERO_BALANCE was sent for user %r and graph %r since "
            "their last top-up", request.id, request.user_id, request.graph_id,
        )  # fmt: skip
        return "not sent: a repeat"
    if sink is None and request.kind == SYSTEM_ALERT:
        held = alert_due(engine, request)
        if held is None:
            return "not sent: an alert like it was sent lately"
        notification.data["held_back_since_last"] = held
    sinks = [name for name in engine.settings.notification_sink_names if sink in (None, name)]
    if LOG in sinks:
        log_notification(notification.body(attempt))
    if WEBHOOK in sinks:
        to_webhook(engine.settings, notification, request, attempt, send or _unsendable)
    return f"sent to {', '.join(sinks)}" if sinks else "not sent: no sink"


# When Redis cannot say, each process limits its own alerts.
_local_alerts: dict[tuple[str, str], float] = {}


def alert_due(engine: Engine, request: NotificationRequest) -> int | None:
    """Whether this SYSTEM_ALERT goes out: at most one per block and error type per
    AUTOEXEC_ALERT_INTERVAL_SECONDS across the cluster (per process if Redis is down). None if
    it is held back; else how many were held back since the last one that went out."""
    seconds = engine.settings.alert_interval_seconds
    block, error_type = str(request.block_id), str(request.error_type)
    if seconds == 0:
        return 0
    try:
        return engine.coordinator.alert_due(block, error_type, seconds)
    except CoordinationError as exc:
        log.warning("SYSTEM_ALERT %s limited in this process only: %s", request.id, exc)
    now = time.monotonic()
    last = _local_alerts.get((block, error_type))
    if last is not None and now - last < seconds:
        return None
    _local_alerts[(block, error_type)] = now
    return 0


def first_zero_balance_notice(coordinator: Coordinator, request: NotificationRequest) -> bool:
    """Whether this ZERO_BALANCE is the first for its user and graph since their last top-up;
    True if Redis cannot say (better twice than never)."""
    try:
        return coordinator.first_zero_balance_notice(
            request.user_id, str(request.graph_id), int(request.top_ups or 0)
        )
    except CoordinationError as exc:
        log.warning("ZERO_BALANCE %s sent without its once-only check: %s", request.id, exc)
        return True


def to_webhook(
    settings: Settings,
    notification: Notification,
    request: NotificationRequest,
    attempt: int,
    send: Sender,
) -> None:
    """Hand one POST to this process's delivery threads (or, if too many wait, fail it)."""
    webhook, retries = Webhook.configured(settings), Retries.configured(settings)
    job = functools.partial(post_once, webhook, notification, request, attempt, retries, send)
    if not delivery_threads(settings.notification_webhook_threads).submit(job):
        error = NotificationDeliveryError("too many webhook posts wait in this process", True)
        retry_later(request, attempt, retries, error, send)


def post_once(
    webhook: Webhook,
    notification: Notification,
    request: NotificationRequest,
    attempt: int,
    retries: Retries,
    send: Sender,
) -> None:
    """One POST (on a delivery thread); a failure that may pass is tried again later."""
    try:
        webhook.post(notification.body(attempt))
    except NotificationDeliveryError as failure:
        retry_later(request, attempt, retries, failure, send)


def retry_later(
    request: NotificationRequest,
    attempt: int,
    retries: Retries,
    failure: NotificationDeliveryError,
    send: Sender,
) -> None:
    """Send the next attempt as a task with a countdown, unless none is left or useful."""
    if not (failure.retry and retries.allow(attempt)):
        log.error("notification %s not delivered to the webhook: %s", request.id, failure)
        return
    delay = retries.delay(attempt)
    log.warning(
        "notification %s: webhook attempt %d failed (%s); next in %.1fs",
        request.id, attempt + 1, failure, delay,
    )  # fmt: skip
    try:
        send(request, sink=WEBHOOK, attempt=attempt + 1, countdown=delay)
    except Exception as exc:
        log.error("notification %s lost: its retry could not be sent: %s", request.id, exc)
