"""A PostgreSQL restart without a message storm (issue 23, finding 1): three runs (a stream, a
fan-out, a run in REVIEW) on a PostgreSQL of the test's own, stopped for a few seconds mid-run.
The worker receives at most twice the messages the same runs take without the fault, and the
runs end with their outputs exact. Every message a worker takes is one Celery logs as received
(a retry and a copy sent again are messages of their own), so the worker's log counts them."""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from autoexec import api
from autoexec.engine.context import Engine
from autoexec.statuses import ExecutionStatus
from autoexec.store.migrate import upgrade_database
from tests.faults.conftest import FaultWorker, fault_worker
from tests.faults.test_service_restarts import (
    SLOW_FAN_OUT,
    PrivatePostgres,
    assert_drained,
    private_postgres,
)
from tests.integration.conftest import Cluster
from tests.integration.test_engine import graph, node, user
from tests.waiting import wait_for_status, wait_until

__all__ = ["private_postgres"]  # the fixture, for this module's test

S = ExecutionStatus
ITEMS = 200
ELEMENTS = 30
DOWN_SECONDS = 6.0

STREAM = graph(
    [
        node("stream", "test_slow_stream", count=ITEMS, delay=0.02),
        node("calc", "calculator", operation="multiply", b=10),
        node("out", "agent_output", name="tens"),
    ],
    [("stream", "item", "calc", "a"), ("calc", "result", "out", "value")],
)
REVIEWED = graph(
    [
        node("x", "agent_input", name="x"),
        node("review", "human_review", message="Send this?"),
        node("ok", "agent_output", name="approved"),
    ],
    [("x", "result", "review", "data"), ("review", "approved_data", "ok", "value")],
)
RECEIVED = re.compile(r"Task (autoexec\.\w+)\[([^\]]+)\] received")
REFUSED = re.compile(r"is COMPLETED; not running it")


@dataclass(frozen=True)
class Received:
    """What the worker's log shows it received, from one point of the log on."""

    by_task: Counter[str]
    copies_of_one_id: int
    refused_as_completed: int

    @property
    def total(self) -> int:
        return sum(self.by_task.values())


def received_since(worker: FaultWorker, offset: int) -> Received:
    text = worker.log()[offset:]
    found = RECEIVED.findall(text)
    copies = Counter(task_id for _, task_id in found)
    return Received(
        Counter(name for name, _ in found),
        max(copies.values(), default=0),
        len(REFUSED.findall(text)),
    )


@dataclass(frozen=True)
class Runs:
    owner: str
    stream: str
    fan_out: str
    review: str


def start_runs(engine: Engine) -> Runs:
    """The run in REVIEW first (it waits there), then the stream and the fan-out."""
    owner = user()
    graphs = {"stream": STREAM, "fan_out": SLOW_FAN_OUT, "review": REVIEWED}
    ids = {name: api.save_graph(g, owner, engine=engine)[0] for name, g in graphs.items()}
    review = api.execute_graph(ids["review"], owner, {"x": {"to": "alice"}}, engine=engine)
    wait_for_status(engine, review, owner, S.REVIEW)
    stream = api.execute_graph(ids["stream"], owner, {}, engine=engine)
    seconds = [0.1] * ELEMENTS
    fan_out = api.execute_graph(ids["fan_out"], owner, {"seconds": seconds}, engine=engine)
    return Runs(owner, stream, fan_out, review)


def finish_runs(engine: Engine, runs: Runs) -> None:
    """Approve the review; every run ends COMPLETED with its outputs exact."""
    [pending] = api.list_reviews(runs.owner, engine=engine)
    api.approve(pending.id, runs.owner, engine=engine)
    expected: dict[str, dict[str, Any]] = {
        runs.stream: {"tens": [10 * i for i in range(ITEMS)]},
        runs.fan_out: {"slept": [[0.1] * ELEMENTS]},
        runs.review: {"approved": [{"to": "alice"}]},
    }
    for exec_id, outputs in expected.items():
        view = api.wait(exec_id, runs.owner, timeout=300, engine=engine)
        got = {name: sorted(v) if name == "tens" else v for name, v in view.outputs.items()}
        assert (view.status, got) == (S.COMPLETED, outputs)


def stop_for_a_while(server: PrivatePostgres, engine: Engine) -> float:
    """PostgreSQL down for ``DOWN_SECONDS``; the monotonic time it answered again (this
    process's pool has dropped its dead connections by then)."""
    server.ctl("stop")
    time.sleep(DOWN_SECONDS)
    server.ctl("start")
    wait_until(lambda: answers(engine), "the private PostgreSQL answering")
    return time.monotonic()


def answers(engine: Engine) -> bool:
    try:
        with engine.db.session() as session:
            session.execute(text("SELECT 1"))
    except OperationalError:
        return False
    return True


def test_a_postgres_restart_mid_run_sends_at_most_twice_the_messages_of_a_run_without_it(
    cluster: Cluster, private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    database_url = private_postgres.server_url.rsplit("/", 1)[0] + "/autoexec_storm"
    upgrade_database(database_url)
    db_env = {"AUTOEXEC_DATABASE_URL": database_url}
    with fault_worker(cluster, tmp_path / "worker.log", db_env, concurrency=2) as worker:
        engine = worker.engine
        offset = len(worker.log())
        finish_runs(engine, start_runs(engine))
        assert_drained(worker)
        without_fault = received_since(worker, offset)

        offset = len(worker.log())
        runs = start_runs(engine)
        time.sleep(2.5)  # the stream and the fan-out are half done
        back = stop_for_a_while(private_postgres, engine)
        finish_runs(engine, runs)
        completed_after = time.monotonic() - back
        assert_drained(worker)
        with_fault = received_since(worker, offset)

    print(f"\nwithout the fault: {without_fault}\nwith the fault: {with_fault}")
    print(f"runs completed {completed_after:.1f} s after PostgreSQL answered again")
    assert with_fault.total <= 2 * without_fault.total, (without_fault, with_fault)
