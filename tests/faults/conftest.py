"""Fault tests: real services, real worker processes, a fault injected for real.

The session cluster of ``tests/integration`` is reused (``cluster``); a test that needs a worker
of its own starts one with :func:`fault_worker`, on queues of its own (dead queue included) and
with any ``AUTOEXEC_*`` overrides (e.g. a private Redis from :func:`private_redis`, FAULTS.md).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from kombu import Connection

from autoexec.engine.context import Engine
from tests.integration import conftest as integration
from tests.integration.conftest import Cluster, environment, worker_process

# The session cluster's fixtures, for the fault tests too.
cluster = integration.cluster
cluster_database = integration.cluster_database

QUEUE_KINDS = ("GRAPH", "NODE", "INBOX", "DEAD")


@dataclass
class FaultWorker:
    engine: Engine
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path

    def queue(self, kind: str) -> str:
        return self.env[f"AUTOEXEC_{kind}_QUEUE"]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None


def queue_env(tag: str) -> dict[str, str]:
    names = {kind: f"autoexec.{kind.lower()}.{tag}" for kind in QUEUE_KINDS}
    return {
        **{f"AUTOEXEC_{kind}_QUEUE": name for kind, name in names.items()},
        "AUTOEXEC_BLOCK_MODULES": "tests.integration.blocks_for_tests",
    }


@contextmanager
def fault_worker(
    cluster: Cluster,
    log_path: Path,
    extra: dict[str, str] | None = None,
    concurrency: int = 1,
    pool: str = "prefork",
) -> Iterator[FaultWorker]:
    """A worker subprocess on queues of its own (``-c concurrency``, ``-P pool``), this process
    submitting to them meanwhile; its queues are deleted after."""
    tag = secrets.token_hex(4)
    env = {"AUTOEXEC_DATABASE_URL": cluster.database_url, **queue_env(tag), **(extra or {})}
    with environment(env) as engine:
        try:
            with worker_process(env, concurrency, log_path, f"faults-{tag}", pool) as process:
                yield FaultWorker(engine, env, process, log_path)
        finally:
            delete_queues(engine.settings.broker_url, env)


def delete_queues(broker_url: str, env: dict[str, str]) -> None:
    with Connection(broker_url) as conn:
        channel = conn.channel()
        for kind in QUEUE_KINDS:
            channel.queue_delete(env[f"AUTOEXEC_{kind}_QUEUE"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PrivateRedis:
    """A redis-server of the test's own (FAULTS.md), stopped and started by its pid."""

    port: int
    directory: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        subprocess.run(
            [
                "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--daemonize", "yes", "--save", "", "--appendonly", "no",
                "--dir", str(self.directory), "--pidfile", str(self.pid_file),
                "--logfile", str(self.directory / "redis.log"),
            ],
            check=True,
        )  # fmt: skip
        self._wait(up=True)

    def stop(self) -> None:
        os.kill(int(self.pid_file.read_text()), signal.SIGTERM)
        self._wait(up=False)

    def freeze(self) -> None:
        """Suspend the server (SIGSTOP): connections are still accepted, nothing is answered, as
        with a hung Redis or a lost network; ``thaw`` resumes it."""
        os.kill(int(self.pid_file.read_text()), signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(int(self.pid_file.read_text()), signal.SIGCONT)

    @property
    def pid_file(self) -> Path:
        return self.directory / "redis.pid"

    def _wait(self, up: bool) -> None:
        deadline = time.monotonic() + 30
        while self.answers() is not up:
            assert time.monotonic() < deadline, f"private redis not {'up' if up else 'down'}"
            time.sleep(0.1)

    def answers(self) -> bool:
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        if server.pid_file.exists() and server.answers():
            server.stop()
