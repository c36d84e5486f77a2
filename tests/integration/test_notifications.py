"""Notifications on a real metered worker, to a webhook served by the test: LOW_BALANCE once on
the crossing, ZERO_BALANCE once per graph until a top-up, AGENT_RUN with what a run did,
retries with the same id, and a webhook that never answers slows no run."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from autoexec import api
from autoexec.engine.context import Engine
from autoexec.statuses import ExecutionStatus
from tests.integration.conftest import Cluster, billing_worker
from tests.integration.test_engine import graph, node, user
from tests.waiting import wait_until
from tests.webhook_receiver import Receiver, webhook_receiver

S = ExecutionStatus
WAIT = 60


def priced_chain(text: str = "hi") -> dict[str, Any]:
    """Four ``test_priced_run`` nodes (2 credits each) then an output: five node executions,
    so with BILLING_ENV the fourth also pays the execution cost (10): 18 credits a run."""
    nodes = [node(f"p{i}", "test_priced_run", text=text) for i in range(1, 5)]
    links = [(f"p{i}", "text", f"p{i + 1}", "text") for i in range(1, 4)]
    return graph(
        [*nodes, node("out", "agent_output", name="text")],
        [*links, ("p4", "text", "out", "value")],
    )


TWO_PRICED = graph(
    [
        node("p1", "test_priced_run", text="a"),
        node("p2", "test_priced_run"),
        node("out", "agent_output", name="text"),
    ],
    [("p1", "text", "p2", "text"), ("p2", "text", "out", "value")],
)


@dataclass
class Notified:
    engine: Engine
    receiver: Receiver
    log_path: Path

    def run(self, graph_id: str, owner: str) -> api.ExecutionView:
        exec_id = api.execute_graph(graph_id, owner, {}, engine=self.engine)
        return api.wait(exec_id, owner, timeout=WAIT, engine=self.engine)

    def save(self, definition: dict[str, Any], owner: str) -> str:
        return api.save_graph(definition, owner, engine=self.engine)[0]

    def worker_log(self) -> str:
        return self.log_path.read_text(errors="replace")


def webhook_env(receiver: Receiver, **more: str) -> dict[str, str]:
    return {
        "AUTOEXEC_NOTIFICATION_SINKS": "log,webhook",
        "AUTOEXEC_NOTIFICATION_WEBHOOK_URL": receiver.url,
        "AUTOEXEC_NOTIFICATION_WEBHOOK_BACKOFF_SECONDS": "0.1",
        "AUTOEXEC_NOTIFICATION_MAX_OUTPUT_BYTES": "256",
        **more,
    }


@pytest.fixture(scope="module")
def notified(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Notified]:
    """A metered worker (threshold 50) whose notifications go to the log and a webhook."""
    log_path = tmp_path_factory.mktemp("notify") / "worker.log"
    with (
        webhook_receiver() as receiver,
        billing_worker(cluster, log_path, extra=webhook_env(receiver)) as (engine, _),
    ):
        yield Notified(engine, receiver, log_path)


def test_low_balance_is_sent_once_when_a_runs_charges_cross_the_threshold(
    notified: Notified,
) -> None:
    owner, receiver = user(), notified.receiver
    api.top_up(owner, 60, engine=notified.engine)
    graph_id = notified.save(priced_chain(), owner)
    first = notified.run(graph_id, owner)  # 60 -> 42: crosses 50
    second = notified.run(graph_id, owner)  # 42 -> 24: below already
    assert (first.status, second.status) == (S.COMPLETED, S.COMPLETED)
    assert api.get_balance(owner, engine=notified.engine) == 24

    receiver.wait_for(lambda: receiver.of_user("LOW_BALANCE", owner))
    receiver.wait_for(lambda: receiver.about("AGENT_RUN", second.id))  # sent after the second run
    [low] = receiver.of_user("LOW_BALANCE", owner)
    assert low["data"]["graph_exec_id"] == first.id
    assert low["data"]["previous_balance"] >= 50 > low["data"]["balance"]
    assert (low["data"]["threshold"], low["data"]["graph_id"]) == (50, graph_id)
    assert low["id"] == f"LOW_BALANCE:{low['data']['transaction_id']}"
    assert f'"id": "{low["id"]}"' in notified.worker_log()  # and one line in the log sink


def test_agent_run_says_what_the_run_output_cost_and_did(notified: Notified) -> None:
    owner, receiver = user(), notified.receiver
    api.top_up(owner, 1000, engine=notified.engine)
    graph_id = notified.save(priced_chain(text="word " * 100), owner)  # 502 bytes of JSON
    view = notified.run(graph_id, owner)
    assert view.status is S.COMPLETED

    [body] = receiver.wait_for(lambda: receiver.about("AGENT_RUN", view.id))
    assert (body["id"], body["type"], body["user_id"]) == (
        f"AGENT_RUN:{view.id}",
        "AGENT_RUN",
        owner,
    )
    data = body["data"]
    assert (data["status"], data["graph_id"], data["error"]) == ("COMPLETED", graph_id, None)
    assert data["credits_used"] == 1000 - api.get_balance(owner, engine=notified.engine) == 18
    assert data["node_count"] == 5
    assert isinstance(data["walltime_seconds"], float)
    assert data["outputs_cut"] is True  # AUTOEXEC_NOTIFICATION_MAX_OUTPUT_BYTES=256
    [text] = data["outputs"]["text"]
    assert text.startswith('"word word') and len(text.encode()) <= 256


def test_zero_balance_is_sent_once_per_graph_until_a_top_up(notified: Notified) -> None:
    owner, receiver = user(), notified.receiver
    api.top_up(owner, 3, engine=notified.engine)
    graph_id = notified.save(TWO_PRICED, owner)
    first = notified.run(graph_id, owner)  # p1: 3 -> 1; p2 refused
    second = notified.run(graph_id, owner)  # p1 refused
    assert (first.status, second.status) == (S.FAILED, S.FAILED)
    assert "InsufficientBalanceError" in str(first.error) and "InsufficientBalanceError" in str(
        second.error
    )

    def zeros() -> list[dict[str, Any]]:
        return receiver.of_user("ZERO_BALANCE", owner)

    receiver.wait_for(zeros)
    # The second refusal's task ran, and said it was a repeat.
    wait_until(lambda: f"ZERO_BALANCE:{second.id}:" in notified.worker_log(), "the repeat")
    assert [b["data"]["graph_exec_id"] for b in zeros()] == [first.id]
    assert zeros()[0]["data"]["balance"] == 1

    api.top_up(owner, 2, engine=notified.engine)
    third = notified.run(graph_id, owner)
    assert third.status is S.FAILED
    receiver.wait_for(zeros, count=2)
    assert [b["data"]["graph_exec_id"] for b in zeros()] == [first.id, third.id]


def test_a_refused_post_is_tried_again_with_the_same_id(notified: Notified) -> None:
    owner, receiver = user(), notified.receiver
    receiver.fail_user(owner, 1)
    graph_id = notified.save(priced_chain(), owner)
    api.top_up(owner, 1000, engine=notified.engine)
    view = notified.run(graph_id, owner)

    bodies = receiver.wait_for(lambda: receiver.about("AGENT_RUN", view.id), count=2)
    assert [b["attempt"] for b in bodies] == [0, 1]
    assert bodies[0]["id"] == bodies[1]["id"] == f"AGENT_RUN:{view.id}"
    assert {**bodies[0], "attempt": 1} == bodies[1]  # the same notification
    log = notified.worker_log()
    assert f"notification {bodies[0]['id']}: webhook attempt 1 failed" in log
    assert "token=secret" not in log  # the URL's path and query stay out of logs


def test_a_webhook_that_never_answers_slows_no_run(cluster: Cluster, tmp_path: Path) -> None:
    # One delivery thread per process and a timeout longer than the test: if a notify task
    # waited for its POST, the worker's two slots would be held and no further run would end.
    env = {
        "AUTOEXEC_NOTIFICATION_WEBHOOK_THREADS": "1",
        "AUTOEXEC_NOTIFICATION_WEBHOOK_TIMEOUT_SECONDS": "600",
    }
    owner = user()
    with (
        webhook_receiver(hang=True) as receiver,
        billing_worker(cluster, tmp_path / "w.log", extra=webhook_env(receiver, **env)) as (
            engine,
            _,
        ),
    ):
        notified = Notified(engine, receiver, tmp_path / "w.log")
        api.top_up(owner, 10_000, engine=engine)
        graph_id = notified.save(priced_chain(), owner)
        assert notified.run(graph_id, owner).status is S.COMPLETED
        receiver.wait_for(lambda: receiver.of_type("AGENT_RUN"))  # its POST hangs now

        exec_ids = [api.execute_graph(graph_id, owner, {}, engine=engine) for _ in range(6)]
        views = [api.wait(exec_id, owner, timeout=WAIT, engine=engine) for exec_id in exec_ids]

        assert [view.status for view in views] == [S.COMPLETED] * 6
        assert receiver.answered == 0  # every POST still hangs
        assert 1 <= len(receiver.received) <= 2  # one thread in each of the two pool processes


def test_a_system_alert_is_sent_once_per_block_and_error_type_in_its_interval(
    notified: Notified,
) -> None:
    owner, receiver = user(), notified.receiver
    api.top_up(owner, 1000, engine=notified.engine)
    bug = f"Bug{uuid.uuid4().hex}"  # an error type no other run raised
    crash = notified.save(graph([node("crash", "test_crash_as", error_type=bug)], []), owner)
    views = [notified.run(crash, owner) for _ in range(3)]
    assert [view.status for view in views] == [S.FAILED] * 3
    for view in views:
        receiver.wait_for(lambda view=view: receiver.about("AGENT_RUN", view.id))
    other = notified.save(graph([node("crash", "test_crash_as", error_type=bug + "X")], []), owner)
    notified.run(other, owner)
    alerts = receiver.wait_for(lambda: receiver.of_user("SYSTEM_ALERT", owner), count=2)
    assert sorted(body["data"]["error_type"] for body in alerts) == [bug, bug + "X"]
    first = next(body for body in alerts if body["data"]["error_type"] == bug)
    assert first["data"]["block_id"] == "test_crash_as"
    assert first["data"]["error"] == f"{bug}: a bug"
    assert first["data"]["graph_exec_id"] in {view.id for view in views}
    assert first["data"]["held_back_since_last"] == 0
