"""A real autoexec cluster for integration tests: ``celery -A autoexec worker`` subprocesses on
the real RabbitMQ, Redis and PostgreSQL, each test session on its own queues and database.

- ``cluster``: a session-wide prefork worker (``-c 2``) and the engine the tests submit with.
- ``start_worker(concurrency)``: context manager for an extra worker on other queues.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from kombu import Connection

from autoexec.celery_app import app
from autoexec.engine.context import Engine
from autoexec.tasks import reconfigure
from tests.conftest import Services, migrated_database

ROOT = Path(__file__).resolve().parents[2]
WORKER_START_TIMEOUT = 60.0


@dataclass
class Cluster:
    engine: Engine
    database_url: str
    graph_queue: str
    node_queue: str
    inbox_queue: str
    log_path: Path

    def worker_log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _queue_env(tag: str) -> dict[str, str]:
    return {
        "AUTOEXEC_GRAPH_QUEUE": f"autoexec.graphs.{tag}",
        "AUTOEXEC_NODE_QUEUE": f"autoexec.nodes.{tag}",
        "AUTOEXEC_INBOX_QUEUE": f"autoexec.inbox.{tag}",
        "AUTOEXEC_BLOCK_MODULES": "tests.integration.blocks_for_tests",
    }


@contextmanager
def worker_process(
    env: dict[str, str],
    concurrency: int,
    log_path: Path,
    name: str,
    pool: str = "prefork",
    app: str = "autoexec",
) -> Iterator[subprocess.Popen[bytes]]:
    queues = ",".join(env[f"AUTOEXEC_{kind}_QUEUE"] for kind in ("GRAPH", "NODE", "INBOX"))
    command = [
        sys.executable, "-m", "celery", "-A", app, "worker", "-l", "info", "-P", pool,
        # A unique node name: its pidbox queue is exclusive, and test runs may overlap.
        "-c", str(concurrency), "-Q", queues, "-n", f"{name}-{secrets.token_hex(3)}@%h",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            # No metrics port unless a test asks: test workers would all contend for 9808.
            env={**os.environ, "AUTOEXEC_METRICS_PORT": "0", **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a test can kill -9 all of it
        )
    try:
        _wait_until_ready(process, log_path)
        yield process
    finally:
        _stop(process)


def _wait_until_ready(process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + WORKER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"worker exited at start:\n{log_path.read_text(errors='replace')}")
        if " ready." in log_path.read_text(errors="replace"):
            return
        time.sleep(0.2)
    pytest.fail(f"worker not ready in {WORKER_START_TIMEOUT}s:\n{log_path.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _delete_queues(broker_url: str, env: dict[str, str]) -> None:
    with Connection(broker_url) as conn:
        channel = conn.channel()
        for key in ("AUTOEXEC_GRAPH_QUEUE", "AUTOEXEC_NODE_QUEUE", "AUTOEXEC_INBOX_QUEUE"):
            channel.queue_delete(env[key])


@pytest.fixture(scope="session")
def cluster_database(services: Services) -> Iterator[str]:
    """The cluster's own database, so the ``db`` fixture's truncation never touches it."""
    with migrated_database(services.database_url) as url:
        yield url


@contextmanager
def environment(env: dict[str, str]) -> Iterator[Engine]:
    """This process submits with ``env`` applied; the previous configuration comes back after
    (the environment itself is never changed)."""
    previous = app.configured_env
    try:
        yield reconfigure(env)
    finally:
        reconfigure(previous, replace=True)


@pytest.fixture(scope="session")
def cluster(
    services: Services, cluster_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    tag = secrets.token_hex(4)
    env = {"AUTOEXEC_DATABASE_URL": cluster_database, **_queue_env(tag)}
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    with environment(env) as engine:
        try:
            with worker_process(env, 2, log_path, f"test-{tag}"):
                yield Cluster(
                    engine, cluster_database, env["AUTOEXEC_GRAPH_QUEUE"],
                    env["AUTOEXEC_NODE_QUEUE"], env["AUTOEXEC_INBOX_QUEUE"], log_path,
                )  # fmt: skip
        finally:
            _delete_queues(services.broker_url, env)


def kill_worker(process: subprocess.Popen[bytes]) -> None:
    """``kill -9`` the worker and its pool processes."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@dataclass
class PrivateQueues:
    engine: Engine
    env: dict[str, str]


@contextmanager
def private_queues(cluster: Cluster) -> Iterator[PrivateQueues]:
    """Queues of its own for a test's workers; the test process submits there meanwhile, and
    whatever the test configures inside comes undone after."""
    tag = secrets.token_hex(4)
    env = {"AUTOEXEC_DATABASE_URL": cluster.database_url, **_queue_env(tag)}
    with environment(env) as engine:
        try:
            yield PrivateQueues(engine, env)
        finally:
            _delete_queues(engine.settings.broker_url, env)


@contextmanager
def single_slot_worker(cluster: Cluster, log_path: Path) -> Iterator[Engine]:
    """A ``-c 1`` worker on its own queues; the test process submits there meanwhile."""
    with (
        private_queues(cluster) as queues,
        worker_process(queues.env, 1, log_path, f"single-{secrets.token_hex(4)}"),
    ):
        yield queues.engine


# Metering on, with an execution cost of 10 credits every 4th node execution of a user.
BILLING_ENV = {
    "AUTOEXEC_BILLING_ENABLED": "true",
    "AUTOEXEC_EXECUTION_COST_COUNT_THRESHOLD": "4",
    "AUTOEXEC_EXECUTION_COST_PER_THRESHOLD": "10",
    "AUTOEXEC_LOW_BALANCE_THRESHOLD": "50",
}


@contextmanager
def billing_worker(
    cluster: Cluster, log_path: Path, concurrency: int = 2, extra: dict[str, str] | None = None
) -> Iterator[tuple[Engine, subprocess.Popen[bytes]]]:
    """A worker with metering on (``BILLING_ENV`` and ``extra``), on queues of its own; the
    test process submits there, with the same settings, meanwhile."""
    tag = secrets.token_hex(4)
    env = {
        "AUTOEXEC_DATABASE_URL": cluster.database_url,
        **_queue_env(tag),
        **BILLING_ENV,
        **(extra or {}),
    }
    try:
        with (
            environment(env) as engine,
            worker_process(env, concurrency, log_path, f"billing-{tag}") as process,
        ):
            yield engine, process
    finally:
        _delete_queues(cluster.engine.settings.broker_url, env)
