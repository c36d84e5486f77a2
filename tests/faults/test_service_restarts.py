"""Services restarted mid-run (SPEC §7, FAULTS.md): Redis and PostgreSQL instances of the test's
own are restarted while a graph streams; every run ends COMPLETED with its outputs exact (no
delivery lost or doubled, I2), nothing is left QUEUED or RUNNING, the queues drain and no Redis
key is left without an expiry (I5)."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kombu import Connection
from sqlalchemy import func, select

from autoexec import api
from autoexec.engine.context import Engine
from autoexec.statuses import ExecutionStatus
from autoexec.store.migrate import upgrade_database
from autoexec.store.tables import FanOutElement, NodeExecution, NodeExecutionOutput
from tests.faults.conftest import FaultWorker, PrivateRedis, fault_worker, free_port
from tests.integration.conftest import Cluster
from tests.integration.test_engine import graph, node, user
from tests.waiting import wait_until

S = ExecutionStatus
ITEMS = 80

STREAM_TIMES_TEN = graph(
    [
        node("stream", "test_slow_stream", count=ITEMS, delay=0.05),
        node("calc", "calculator", operation="multiply", b=10),
        node("out", "agent_output", name="tens"),
    ],
    [("stream", "item", "calc", "a"), ("calc", "result", "out", "value")],
)


def start_stream(engine: Engine) -> tuple[str, str]:
    owner = user()
    graph_id, _ = api.save_graph(STREAM_TIMES_TEN, owner, engine=engine)
    return api.execute_graph(graph_id, owner, {}, engine=engine), owner


def outputs_so_far(engine: Engine, exec_id: str) -> int:
    with engine.db.session() as session:
        stmt = select(func.count()).where(NodeExecutionOutput.graph_exec_id == exec_id)
        return int(session.scalar(stmt) or 0)


def wait_for_outputs(engine: Engine, exec_id: str, at_least: int) -> None:
    wait_until(lambda: outputs_so_far(engine, exec_id) >= at_least, "the stream starting")


def assert_exact(engine: Engine, exec_id: str, owner: str) -> None:
    view = api.wait(exec_id, owner, timeout=180, engine=engine)
    assert view.status is S.COMPLETED
    assert sorted(view.outputs["tens"]) == [10 * i for i in range(ITEMS)]  # none lost or doubled
    with engine.db.session() as session:
        calcs = session.scalar(
            select(func.count()).where(
                NodeExecution.graph_exec_id == exec_id, NodeExecution.node_id == "calc"
            )
        )
        stuck = session.scalar(
            select(func.count()).where(
                NodeExecution.graph_exec_id == exec_id,
                NodeExecution.status.in_((S.QUEUED, S.RUNNING)),
            )
        )
    assert (calcs, stuck) == (ITEMS, 0)


def assert_drained(worker: FaultWorker) -> None:
    """I5: the worker's queues empty out, and every key autoexec left in Redis expires."""
    deadline = time.monotonic() + 60
    with Connection(worker.engine.settings.broker_url) as conn:
        channel = conn.channel()
        while True:
            waiting = {
                kind: channel.queue_declare(worker.queue(kind), passive=True).message_count
                for kind in ("GRAPH", "NODE")
            }
            if not any(waiting.values()):
                break
            assert time.monotonic() < deadline, f"messages left: {waiting}"
            time.sleep(0.2)
    client = worker.engine.coordinator.client
    forever = [key for key in client.scan_iter(match="autoexec:*") if client.ttl(key) == -1]
    assert forever == []


def test_redis_restarted_mid_run_loses_and_doubles_nothing(
    cluster: Cluster, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    redis_env = {"AUTOEXEC_REDIS_URL": private_redis.url, "AUTOEXEC_RESULT_BACKEND": ""}
    with fault_worker(cluster, tmp_path / "worker.log", redis_env, concurrency=2) as worker:
        exec_id, owner = start_stream(worker.engine)
        wait_for_outputs(worker.engine, exec_id, 10)
        private_redis.stop()  # every lock, flag and wake-up is gone with it (no persistence)
        time.sleep(1.0)
        private_redis.start()
        assert_exact(worker.engine, exec_id, owner)
        assert_drained(worker)


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster of the test's own (FAULTS.md), on a port of its own."""

    version: str
    name: str
    port: int

    @property
    def server_url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def ctl(self, action: str) -> None:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, action],
            check=True,
            capture_output=True,
        )


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
    server = PrivatePostgres(version, f"faults_{secrets.token_hex(3)}", free_port())
    subprocess.run(
        ["pg_createcluster", version, server.name, "-p", str(server.port), "--", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    try:
        server.ctl("start")
        yield server
    finally:
        subprocess.run(
            ["pg_dropcluster", "--stop", version, server.name], check=False, capture_output=True
        )


def test_postgres_restarted_mid_run_loses_and_doubles_nothing(
    cluster: Cluster, private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    database_url = private_postgres.server_url.rsplit("/", 1)[0] + "/autoexec_faults"
    upgrade_database(database_url)
    db_env = {"AUTOEXEC_DATABASE_URL": database_url}
    with fault_worker(cluster, tmp_path / "worker.log", db_env, concurrency=2) as worker:
        exec_id, owner = start_stream(worker.engine)
        wait_for_outputs(worker.engine, exec_id, 10)
        private_postgres.ctl("restart")  # every connection of every process is cut
        assert_exact(worker.engine, exec_id, owner)
        assert_drained(worker)


def rabbit_bin(name: str) -> str:
    """RabbitMQ's own script: the one on PATH (Debian's wrapper) switches to the rabbitmq user,
    which cannot write the test's directory."""
    own = Path("/usr/lib/rabbitmq/bin") / name
    return str(own) if own.exists() else name


@dataclass
class PrivateRabbit:
    """A second RabbitMQ node of the test's own (FAULTS.md), on ports of its own."""

    directory: Path
    port: int
    name: str

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def env(self) -> dict[str, str]:
        base = self.directory
        return {
            **os.environ,
            "HOME": str(base / "home"),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(base / "node.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def ctl(self, *args: str) -> None:
        subprocess.run(
            [rabbit_bin("rabbitmqctl"), "-n", self.name, *args],
            env=self.env(),
            check=True,
            capture_output=True,
            timeout=120,
        )


@pytest.fixture
def private_rabbit(tmp_path: Path) -> Iterator[PrivateRabbit]:
    base = tmp_path / "rmq"
    (base / "home").mkdir(parents=True)
    (base / "enabled_plugins").write_text("[].")
    port = free_port()
    (base / "rabbitmq.conf").write_text(
        f"listeners.tcp.local = 127.0.0.1:{port}\nloopback_users = none\n"
    )
    server = PrivateRabbit(base, port, f"faults{secrets.token_hex(3)}@localhost")
    subprocess.run([rabbit_bin("rabbitmq-server"), "-detached"], env=server.env(), check=True)
    try:
        server.ctl("wait", str(base / "node.pid"))
        yield server
    finally:
        subprocess.run(
            [rabbit_bin("rabbitmqctl"), "-n", server.name, "stop"],
            env=server.env(),
            check=False,
            capture_output=True,
            timeout=120,
        )


def test_rabbitmq_restarted_mid_run_loses_and_doubles_nothing(
    cluster: Cluster, private_rabbit: PrivateRabbit, tmp_path: Path
) -> None:
    broker_env = {"AUTOEXEC_BROKER_URL": private_rabbit.url}
    with fault_worker(cluster, tmp_path / "worker.log", broker_env, concurrency=2) as worker:
        exec_id, owner = start_stream(worker.engine)
        wait_for_outputs(worker.engine, exec_id, 10)
        private_rabbit.ctl("stop_app")  # every connection is closed, unacked messages requeued
        time.sleep(1.0)
        private_rabbit.ctl("start_app")
        assert_exact(worker.engine, exec_id, owner)
        assert_drained(worker)


ELEMENTS = 30
SLOW_FAN_OUT = graph(
    [
        node("x", "agent_input", name="seconds"),
        {**node("sleep", "test_sleep"), "fan_out": "seconds"},
        node("out", "agent_output", name="slept"),
    ],
    [("x", "result", "sleep", "seconds"), ("sleep", "done", "out", "value")],
)


def recorded_elements(engine: Engine, exec_id: str) -> int:
    with engine.db.session() as session:
        stmt = (
            select(func.count())
            .select_from(FanOutElement)
            .join(NodeExecution, NodeExecution.id == FanOutElement.node_exec_id)
            .where(NodeExecution.graph_exec_id == exec_id)
        )
        return int(session.scalar(stmt) or 0)


def fan_out_waiting(engine: Engine, exec_id: str, owner: str) -> bool:
    view = api.get_execution(exec_id, owner, engine=engine)
    return any(n.node_id == "sleep" and n.status is S.WAITING for n in view.node_executions)


def test_a_fan_out_whose_chord_redis_lost_still_ends_with_every_element_once(
    cluster: Cluster, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    # The chord's counter lives in Redis (the result backend); Redis keeps nothing on disk.
    redis_env = {"AUTOEXEC_REDIS_URL": private_redis.url, "AUTOEXEC_RESULT_BACKEND": ""}
    with fault_worker(cluster, tmp_path / "worker.log", redis_env, concurrency=2) as worker:
        owner = user()
        graph_id, _ = api.save_graph(SLOW_FAN_OUT, owner, engine=worker.engine)
        seconds = [0.2] * ELEMENTS
        exec_id = api.execute_graph(graph_id, owner, {"seconds": seconds}, engine=worker.engine)
        wait_until(lambda: fan_out_waiting(worker.engine, exec_id, owner), "the fan-out waiting")
        time.sleep(1.0)  # some of its elements have run, most have not
        private_redis.stop()
        time.sleep(1.0)
        private_redis.start()
        view = api.wait(exec_id, owner, timeout=180, engine=worker.engine)
    assert (view.status, view.outputs) == (S.COMPLETED, {"slept": [seconds]})
    assert recorded_elements(worker.engine, exec_id) == ELEMENTS
