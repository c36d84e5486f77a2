"""Notifications without services: which changes notify, what a task message carries, how
outputs are cut, the settings, the webhook's answers and retries, the delivery threads."""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from autoexec.billing.notification_sinks import (
    MAX_BACKOFF_SECONDS,
    DeliveryThreads,
    Retries,
    Webhook,
    http_client,
    log_notification,
)
from autoexec.billing.notifications import (
    AGENT_RUN,
    LOW_BALANCE,
    SYSTEM_ALERT,
    ZERO_BALANCE,
    NotificationHook,
    NotificationRequest,
    alert_due,
    cut_outputs,
    deliver,
    first_zero_balance_notice,
    low_balance_crossed,
    retry_later,
    run_summary,
    system_alert_request,
    zero_balance_request,
)
from autoexec.block_run.failures import UNEXPECTED_ERROR
from autoexec.coordination import Coordinator, Keys, redis_client
from autoexec.engine.context import Engine
from autoexec.errors import ConfigurationError, NotificationDeliveryError
from autoexec.hooks import (
    BalanceChange,
    ChargeRefused,
    GraphExecutionChange,
    NodeExecutionChange,
    NodeRef,
)
from autoexec.settings import Settings, load_settings
from autoexec.statuses import ExecutionStatus
from autoexec.store.tables import GraphExecution
from autoexec.task_arguments import check_arguments
from autoexec.tasks import notify
from tests.webhook_receiver import webhook_receiver

S = ExecutionStatus


def charge(before: int, after: int, kind: str = "CHARGE", transaction_id: int = 7) -> BalanceChange:
    return BalanceChange("u1", kind, after - before, before, after, transaction_id, "g1", "e1", 3)


def refused(over_budget: bool = False, top_ups: int = 1) -> ChargeRefused:
    return ChargeRefused(
        "u1", "g1", "e1", 4, "InsufficientBalanceError: ...", 1, top_ups, over_budget
    )


ENDED = GraphExecutionChange("e1", "u1", "g1", 1, S.COMPLETED)


@pytest.mark.parametrize(
    ("before", "after", "kind", "crossed"),
    [
        (60, 40, "CHARGE", True),
        (50, 49, "CHARGE", True),  # from exactly the threshold
        (60, 50, "CHARGE", False),  # down to it is not below it
        (49, 40, "CHARGE", False),  # below already: told when it crossed
        (40, 60, "TOP_UP", False),
        (60, 40, "ADJUSTMENT", False),
    ],
)
def test_low_balance_only_on_a_charge_that_crosses_the_threshold(
    before: int, after: int, kind: str, crossed: bool
) -> None:
    assert low_balance_crossed(charge(before, after, kind), 50) is crossed


class Sent:
    """A Sender that records what it would send."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail = fail

    def __call__(
        self,
        request: NotificationRequest,
        sink: str | None = None,
        attempt: int = 0,
        countdown: float | None = None,
    ) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.calls.append(
            {"request": request, "sink": sink, "attempt": attempt, "countdown": countdown}
        )

    @property
    def kinds(self) -> list[str]:
        return [call["request"].kind for call in self.calls]


def hook(sent: Sent, **settings: Any) -> NotificationHook:
    return NotificationHook(sent, load_settings(low_balance_threshold=50, **settings))


def feed(target: NotificationHook) -> None:
    target.balance_changed(charge(60, 40))
    target.balance_changed(charge(40, 30, transaction_id=8))
    target.charge_refused(refused())
    target.charge_refused(refused(over_budget=True))
    target.execution_ended(ENDED)


def test_the_hook_sends_after_the_commit_one_task_per_notification() -> None:
    sent = Sent()
    target = hook(sent, billing_enabled=True)
    feed(target)
    assert sent.calls == []  # nothing before the commit
    target.committed()
    assert sent.kinds == [LOW_BALANCE, ZERO_BALANCE, AGENT_RUN]  # over budget: no ZERO_BALANCE
    low, zero, run = (call["request"] for call in sent.calls)
    assert (low.id, low.balance, low.previous_balance, low.amount) == ("LOW_BALANCE:7", 40, 60, 20)
    assert (zero.id, zero.top_ups, zero.graph_id) == ("ZERO_BALANCE:e1:4", 1, "g1")
    assert run.id == "AGENT_RUN:e1"
    target.committed()
    assert len(sent.calls) == 3  # each sent once


def test_without_metering_only_runs_notify_and_without_sinks_nothing() -> None:
    sent = Sent()
    target = hook(sent)
    feed(target)
    target.committed()
    assert sent.kinds == [AGENT_RUN]
    silent = Sent()
    target = hook(silent, billing_enabled=True, notification_sinks="")
    feed(target)
    target.committed()
    assert silent.calls == []


def test_a_send_that_fails_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    target = hook(Sent(fail=True))
    target.execution_ended(ENDED)
    target.committed()
    assert "notification AGENT_RUN:e1 not sent: ConnectionError: broker down" in caplog.text


def test_a_task_message_carries_ids_and_numbers_that_fit_the_task() -> None:
    sent = Sent()
    target = hook(sent, billing_enabled=True)
    feed(target)
    target.committed()
    for call in sent.calls:
        message = call["request"].message()
        assert all(isinstance(value, str | int | float) for value in message.values()), message
        kwargs = {"request": message, "sink": None, "attempt": 0}
        check_arguments(notify.run, [], kwargs)
        assert NotificationRequest.model_validate(message) == call["request"]


# --- payloads -------------------------------------------------------------------------------


def test_outputs_that_fit_are_sent_whole() -> None:
    outputs = {"answer": [1, "two"], "more": [{"x": 3}]}
    assert cut_outputs(outputs, 1024) == (outputs, False)


def test_a_large_output_is_cut_to_the_size() -> None:
    kept, cut = cut_outputs({"text": ["é" * 5000]}, 256)
    assert cut
    assert kept["text"][0].startswith('"éé')
    assert len(kept["text"][0].encode()) <= 256


def test_many_outputs_share_the_size_and_the_last_are_left_out() -> None:
    outputs = {"a": list(range(1000, 1100)), "b": ["x" * 100]}
    kept, cut = cut_outputs(outputs, 256)
    assert cut
    assert kept == {"a": list(range(1000, 1016))}  # 256 // 16 values, each fits its share
    assert len(json.dumps(kept)) <= 256
    few = cut_outputs({"a": ["y" * 300, "z" * 300]}, 128)[0]["a"]
    assert [len(value) for value in few] == [64, 64]  # an even share each


def test_a_run_summary_says_how_it_ended_what_it_output_cost_and_took() -> None:
    execution = GraphExecution(
        id="e1", graph_id="g1", graph_version=2, user_id="u1", status=S.FAILED, error="boom",
        credits_spent=18, stats={"walltime": 1.5, "node_count": 5, "cost": 18},
    )  # fmt: skip
    summary = run_summary(execution, {"out": ["x" * 100]}, 64)
    assert summary == {
        "graph_id": "g1", "graph_version": 2, "graph_exec_id": "e1", "status": "FAILED",
        "error": "boom", "outputs": {"out": ['"' + "x" * 63]}, "outputs_cut": True,
        "credits_used": 18, "walltime_seconds": 1.5, "node_count": 5,
    }  # fmt: skip


# --- settings -------------------------------------------------------------------------------


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(f"AUTOEXEC_{name.upper()}", raising=False)


@pytest.mark.usefixtures("clean_environment")
def test_notification_settings_default_to_the_log() -> None:
    settings = load_settings()
    assert settings.notification_sink_names == ["log"]
    assert settings.notification_webhook_url is None
    assert load_settings(notification_sinks="").notification_sink_names == []
    both = load_settings(notification_sinks="log, webhook", notification_webhook_url="https://h/x")
    assert both.notification_sink_names == ["log", "webhook"]


@pytest.mark.usefixtures("clean_environment")
@pytest.mark.parametrize(
    ("variables", "problem"),
    [
        (
            {"AUTOEXEC_NOTIFICATION_SINKS": "webhook"},
            "AUTOEXEC_NOTIFICATION_WEBHOOK_URL: Value error, not set, but "
            "AUTOEXEC_NOTIFICATION_SINKS has webhook",
        ),
        ({"AUTOEXEC_NOTIFICATION_SINKS": "log,sms"}, "AUTOEXEC_NOTIFICATION_SINKS: .*'sms'"),
        (
            {"AUTOEXEC_NOTIFICATION_WEBHOOK_URL": "ftp://h/x?token=secret"},
            "AUTOEXEC_NOTIFICATION_WEBHOOK_URL: .*not an http:// or https:// URL",
        ),
        ({"AUTOEXEC_NOTIFICATION_WEBHOOK_TIMEOUT_SECONDS": "0"}, "TIMEOUT_SECONDS"),
        ({"AUTOEXEC_NOTIFICATION_WEBHOOK_RETRIES": "-1"}, "WEBHOOK_RETRIES"),
        ({"AUTOEXEC_NOTIFICATION_WEBHOOK_THREADS": "0"}, "WEBHOOK_THREADS"),
        ({"AUTOEXEC_NOTIFICATION_MAX_OUTPUT_BYTES": "10"}, "MAX_OUTPUT_BYTES"),
    ],
)
def test_bad_notification_settings_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], problem: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=problem) as caught:
        load_settings()
    assert "secret" not in str(caught.value)


# --- the webhook ----------------------------------------------------------------------------


BODY = {"id": "AGENT_RUN:e1", "type": AGENT_RUN, "data": {"status": "COMPLETED"}}


def test_the_webhook_posts_json_with_the_id_as_idempotency_key() -> None:
    with webhook_receiver() as receiver:
        Webhook(receiver.url, 5).post(BODY)
    assert receiver.received == [BODY]
    headers = {name.lower(): value for name, value in receiver.headers[0].items()}
    assert headers["content-type"] == "application/json"
    assert headers["idempotency-key"] == "AGENT_RUN:e1"


@pytest.mark.parametrize(
    ("status", "retry"),
    [(503, True), (500, True), (429, True), (400, False), (302, False), (307, False)],
)
def test_a_refusal_says_whether_to_try_again(status: int, retry: bool) -> None:
    with (
        webhook_receiver(fail_first=1, failure=status) as receiver,
        pytest.raises(NotificationDeliveryError) as caught,
    ):
        Webhook(receiver.url, 5).post(BODY)
    assert caught.value.retry is retry
    assert str(caught.value) == f"{receiver.url.split('/hooks')[0]} answered {status}"
    assert len(receiver.received) == 1  # a redirect is not followed


def test_a_hanging_or_absent_receiver_fails_an_attempt_in_its_timeout() -> None:
    with webhook_receiver(hang=True) as receiver:
        with pytest.raises(NotificationDeliveryError, match="timed out") as hung:
            Webhook(receiver.url, 0.2).post(BODY)
        url = receiver.url
    with pytest.raises(NotificationDeliveryError, match="Connection refused") as absent:
        Webhook(url, 2).post(BODY)
    assert hung.value.retry and absent.value.retry
    assert "secret" not in str(hung.value) + str(absent.value)  # no path or query in logs


def test_httpx_logs_no_line_of_a_webhook_post_and_keeps_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with webhook_receiver(fail_first=1) as receiver:
        with pytest.raises(NotificationDeliveryError):
            Webhook(receiver.url, 5).post(BODY)
        Webhook(receiver.url, 5).post(BODY)
        assert "secret" not in caplog.text  # the URL's query
        with httpx.Client() as own:  # a block's own client, say
            own.post(receiver.url.replace("token=secret", "q=mine"), json=BODY)
    assert "q=mine" in caplog.text


def test_a_forked_child_posts_through_a_client_of_its_own() -> None:
    # A prefork worker's children must not write to connections their parent holds.
    with webhook_receiver() as receiver:
        webhook = Webhook(receiver.url, 5)
        webhook.post({**BODY, "id": "parent, before"})
        parents = http_client()
        child = os.fork()
        if child == 0:
            code = 1
            try:
                webhook.post({**BODY, "id": "child"})
                code = 0 if http_client() is not parents else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(child, 0)
        webhook.post({**BODY, "id": "parent, after"})
    assert os.waitstatus_to_exitcode(status) == 0
    assert [body["id"] for body in receiver.received] == [
        "parent, before",
        "child",
        "parent, after",
    ]


def test_retries_double_from_the_backoff_up_to_a_cap_with_jitter_in_the_upper_half() -> None:
    longest, shortest = Retries(3, 2, jitter=lambda: 1.0), Retries(3, 2, jitter=lambda: 0.0)
    assert [longest.delay(attempt) for attempt in range(3)] == [2, 4, 8]
    assert [shortest.delay(attempt) for attempt in range(3)] == [1, 2, 4]
    assert longest.delay(20) == MAX_BACKOFF_SECONDS == 2 * shortest.delay(20)
    drawn = [Retries(limit=3, backoff=2).delay(2) for _ in range(20)]
    assert all(4 <= delay <= 8 for delay in drawn) and len(set(drawn)) > 1
    assert [longest.allow(attempt) for attempt in range(5)] == [True, True, True, False, False]


def test_a_failed_attempt_sends_the_next_with_a_countdown_until_none_is_left(
    caplog: pytest.LogCaptureFixture,
) -> None:
    request = NotificationRequest(kind=AGENT_RUN, id="AGENT_RUN:e1", user_id="u1", at=0.0)
    sent = Sent()
    retries = Retries(limit=2, backoff=0.5, jitter=lambda: 1.0)  # the longest wait
    failure = NotificationDeliveryError("answered 503", retry=True)
    for attempt in range(3):
        retry_later(request, attempt, retries, failure, sent)
    retry_later(request, 0, retries, NotificationDeliveryError("answered 400", False), sent)
    assert [(c["sink"], c["attempt"], c["countdown"]) for c in sent.calls] == [
        ("webhook", 1, 0.5),
        ("webhook", 2, 1.0),
    ]
    assert caplog.text.count("not delivered to the webhook") == 2


def test_delivery_threads_refuse_work_past_their_bound_instead_of_blocking() -> None:
    release = threading.Event()
    threads = DeliveryThreads(threads=1, pending=2)
    started = threading.Event()

    def hang() -> None:
        started.set()
        release.wait()

    assert threads.submit(hang)
    assert started.wait(5)  # the only thread is busy
    assert threads.submit(hang) and threads.submit(hang)  # two may wait
    assert not threads.submit(hang)
    release.set()


# --- deciding and delivering (no database: balance notifications) ---------------------------


def engine_with(coordinator: Coordinator, **settings: Any) -> Engine:
    return cast(
        Engine, SimpleNamespace(settings=load_settings(**settings), coordinator=coordinator)
    )


def memory_coordinator() -> Coordinator:
    return Coordinator(redis_client(f"memory://notify-{uuid.uuid4().hex}"))


class DownRedis:
    def first_zero_balance_notice(self, user_id: str, graph_id: str, top_ups: int) -> bool:
        raise RedisConnectionError("Redis is down")


def zero(graph_exec_id: str, top_ups: int) -> NotificationRequest:
    change = ChargeRefused("u1", "g1", graph_exec_id, 4, "error", 1, top_ups, False)
    return zero_balance_request(change, 0.0)


def test_zero_balance_once_per_user_and_graph_until_a_top_up_and_always_if_redis_is_down() -> None:
    coordinator = memory_coordinator()
    decisions = [
        first_zero_balance_notice(coordinator, zero(run, top_ups))
        for run, top_ups in (("e1", 1), ("e2", 1), ("e3", 2), ("e4", 2))
    ]
    assert decisions == [True, False, True, False]
    down = cast(Coordinator, DownRedis())
    assert first_zero_balance_notice(down, zero("e5", 2))
    assert first_zero_balance_notice(down, zero("e6", 2))


def test_the_log_sink_logs_one_line_per_notification_and_a_repeat_zero_balance_none(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="autoexec.billing.notifications")
    engine = engine_with(memory_coordinator())
    assert [deliver(engine, zero(run, 1)) for run in ("e1", "e2")] == [
        "sent to log",
        "not sent: a repeat",
    ]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("notification ")]
    assert len(lines) == 2
    kind, body = lines[0].removeprefix("notification ").split(" ", 1)
    assert kind == ZERO_BALANCE
    assert json.loads(body) == {
        "id": "ZERO_BALANCE:e1:4", "type": ZERO_BALANCE, "user_id": "u1",
        "created_at": "1970-01-01T00:00:00+00:00", "attempt": 0,
        "data": {"balance": 1, "graph_id": "g1", "graph_exec_id": "e1", "node_exec_id": 4},
    }  # fmt: skip
    assert "ZERO_BALANCE was sent for user 'u1' and graph 'g1'" in lines[1]


def test_a_retry_goes_only_to_its_sink_and_only_if_still_configured() -> None:
    with webhook_receiver() as receiver:
        engine = engine_with(
            memory_coordinator(),
            notification_sinks="log,webhook",
            notification_webhook_url=receiver.url,
        )
        assert deliver(engine, zero("e1", 1), sink="webhook", attempt=2) == "sent to webhook"
        body = receiver.wait_for(lambda: receiver.of_type(ZERO_BALANCE))[0]
        logged_only = engine_with(memory_coordinator())
        assert deliver(logged_only, zero("e2", 1), sink="webhook", attempt=1) == "not sent: no sink"
    assert body["attempt"] == 2
    assert len(receiver.received) == 1


# --- system alerts ----------------------------------------------------------------------------


def failed_node(stats: dict[str, Any] | None, status: ExecutionStatus = S.FAILED) -> Any:
    node = NodeRef("e1", "u1", 9, "crash", "test_crash")
    return NodeExecutionChange(node, status, error="RuntimeError: boom", stats=stats)


def test_only_a_node_failed_by_an_unexpected_error_asks_for_a_system_alert() -> None:
    request = system_alert_request(failed_node({UNEXPECTED_ERROR: "RuntimeError"}), 0.0)
    assert request is not None
    assert (request.kind, request.id, request.block_id, request.error_type) == (
        SYSTEM_ALERT,
        "SYSTEM_ALERT:9",
        "test_crash",
        "RuntimeError",
    )
    assert system_alert_request(failed_node({"error": "bad input"}), 0.0) is None  # user error
    assert system_alert_request(failed_node({UNEXPECTED_ERROR: "X"}, S.COMPLETED), 0.0) is None
    sent = Sent()
    target = hook(sent)
    target.node_ended(failed_node({UNEXPECTED_ERROR: "RuntimeError"}))
    target.node_ended(failed_node(None))
    target.committed()
    assert sent.kinds == [SYSTEM_ALERT]


def alert(block: str = "test_crash", error_type: str = "RuntimeError") -> NotificationRequest:
    change = failed_node({UNEXPECTED_ERROR: error_type})
    change = NodeExecutionChange(
        NodeRef("e1", "u1", 9, "n", block), change.status, change.error, change.stats
    )
    request = system_alert_request(change, 0.0)
    assert request is not None
    return request


def test_system_alerts_are_limited_per_block_and_error_type() -> None:
    coordinator = memory_coordinator()
    engine = engine_with(coordinator, alert_interval_seconds=60)
    assert alert_due(engine, alert()) == 0
    assert alert_due(engine, alert()) is None  # held back
    assert alert_due(engine, alert()) is None
    assert alert_due(engine, alert(error_type="KeyError")) == 0
    assert alert_due(engine, alert(block="other")) == 0
    coordinator.client.delete(Keys.alert("test_crash", "RuntimeError"))  # the interval passed
    assert alert_due(engine, alert()) == 2  # and says how many were held back
    assert alert_due(engine_with(coordinator, alert_interval_seconds=0), alert()) == 0


def test_system_alerts_are_limited_per_process_when_redis_is_down() -> None:
    engine = engine_with(cast(Coordinator, DownAlerts()), alert_interval_seconds=60)
    unique = f"block-{uuid.uuid4().hex}"
    assert alert_due(engine, alert(block=unique)) == 0
    assert alert_due(engine, alert(block=unique)) is None


class DownAlerts:
    def alert_due(self, block_id: str, error_type: str, seconds: float) -> int | None:
        raise RedisConnectionError("Redis is down")


def test_the_log_sink_leaves_out_outputs_and_error_texts(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="autoexec.billing.notifications")
    body = {
        "id": "AGENT_RUN:e1", "type": AGENT_RUN, "user_id": "u1", "attempt": 0,
        "data": {"status": "FAILED", "error": "secret-ish", "outputs": {"b": [1], "a": [2]}},
    }  # fmt: skip
    log_notification(body)
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("notification")]
    logged = json.loads(line.split(" ", 2)[2])
    assert logged["data"] == {"status": "FAILED", "output_names": ["a", "b"]}
    assert "secret-ish" not in line
