"""``autoexec run`` as a subprocess on the real cluster: ``--detach``, ``--timeout``, Ctrl-C, and
losing the database or Redis while following. The run goes on in the workers every time."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import make_url

from autoexec import api
from autoexec.engine.context import Engine
from autoexec.statuses import ExecutionStatus
from tests.conftest import Services
from tests.integration.cli_runs import (
    execution_id,
    follow_until_the_wait_node_runs,
    wait_graph,
)
from tests.integration.conftest import Cluster
from tests.integration.tcp_proxy import TcpProxy
from tests.integration.test_cli_embedded import AUTOEXEC, ROOT, RUN_TIMEOUT_SECONDS

USER = "cli-cluster"
WAIT_SECONDS = 4


def cluster_env(cluster: Cluster, services: Services, **overrides: str) -> dict[str, str]:
    return {
        **os.environ,
        "AUTOEXEC_GRAPH_QUEUE": cluster.graph_queue,
        "AUTOEXEC_NODE_QUEUE": cluster.node_queue,
        "AUTOEXEC_INBOX_QUEUE": cluster.inbox_queue,
        "AUTOEXEC_DATABASE_URL": cluster.database_url,
        "AUTOEXEC_REDIS_URL": services.redis_url,
        "AUTOEXEC_BROKER_URL": services.broker_url,
        "AUTOEXEC_USER": USER,
        "AUTOEXEC_BLOCK_MODULES": "",  # the graphs here use built-in blocks only
        **overrides,
    }


def autoexec_run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(AUTOEXEC), "run", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
    )


def wait_for_end(cluster: Cluster, graph_exec_id: str) -> api.ExecutionView:
    return api.wait(graph_exec_id, USER, timeout=RUN_TIMEOUT_SECONDS, engine=cluster.engine)


def test_detach_prints_the_id_and_returns_while_the_run_completes(
    cluster: Cluster, services: Services, tmp_path: Path
) -> None:
    graph = wait_graph(tmp_path / "wait.json")
    run = autoexec_run(cluster_env(cluster, services), str(graph), "--input", "s=2", "--detach")
    assert run.returncode == 0, run.stderr
    graph_exec_id = run.stdout.strip()
    assert run.stdout == f"{graph_exec_id}\n"
    assert execution_id(run.stderr) == graph_exec_id
    view = wait_for_end(cluster, graph_exec_id)
    assert view.status is ExecutionStatus.COMPLETED
    assert view.outputs == {"result": ["done"]}


def test_timeout_says_where_to_look_and_the_run_goes_on(
    cluster: Cluster, services: Services, tmp_path: Path
) -> None:
    graph = wait_graph(tmp_path / "wait.json")
    env = cluster_env(cluster, services)
    run = autoexec_run(env, str(graph), "--input", f"s={WAIT_SECONDS}", "--timeout", "1")
    assert run.returncode == 124, run.stderr
    graph_exec_id = execution_id(run.stderr)
    assert run.stderr.splitlines()[-2:] == [
        "timeout: the run did not end within 1s",
        f"still RUNNING — autoexec status {graph_exec_id} / autoexec cancel {graph_exec_id}",
    ]
    assert run.stdout == ""
    assert "Traceback" not in run.stderr
    view = wait_for_end(cluster, graph_exec_id)
    assert view.status is ExecutionStatus.COMPLETED
    assert view.outputs == {"result": ["done"]}


@contextmanager
def database_behind_proxy(database_url: str) -> Iterator[tuple[str, TcpProxy]]:
    url = make_url(database_url)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    try:
        yield url.set(port=proxy.port).render_as_string(hide_password=False), proxy
    finally:
        proxy.cut()


def test_ctrl_c_says_where_to_look_and_the_run_goes_on(
    cluster: Cluster, services: Services, tmp_path: Path
) -> None:
    graph = wait_graph(tmp_path / "wait.json")
    env = cluster_env(cluster, services)
    following = follow_until_the_wait_node_runs(env, str(graph), "--input", f"s={WAIT_SECONDS}")
    following.process.send_signal(signal.SIGINT)
    code, stdout, stderr = following.finish()
    graph_exec_id = following.graph_exec_id
    assert code == 130, stderr
    assert stdout == ""
    assert stderr.splitlines()[-1] == (
        f"still RUNNING — autoexec status {graph_exec_id} / autoexec cancel {graph_exec_id}"
    )
    assert "Traceback" not in stderr
    view = wait_for_end(cluster, graph_exec_id)
    assert view.status is ExecutionStatus.COMPLETED
    assert view.outputs == {"result": ["done"]}


def test_losing_the_database_while_following_never_claims_the_run_failed(
    cluster: Cluster, services: Services, tmp_path: Path
) -> None:
    graph = wait_graph(tmp_path / "wait.json")
    with database_behind_proxy(cluster.database_url) as (proxied_url, proxy):
        env = cluster_env(cluster, services, AUTOEXEC_DATABASE_URL=proxied_url)
        following = follow_until_the_wait_node_runs(env, str(graph), "--input", f"s={WAIT_SECONDS}")
        proxy.cut()
        code, stdout, stderr = following.finish()
    graph_exec_id = following.graph_exec_id
    assert code == 75, stderr
    assert stdout == ""
    assert (
        f"lost contact: the execution may still be running: autoexec status {graph_exec_id}"
        in stderr.splitlines()
    )
    assert "Traceback" not in stderr
    assert "FAILED" not in stderr
    view = wait_for_end(cluster, graph_exec_id)
    assert view.status is ExecutionStatus.COMPLETED
    assert view.outputs == {"result": ["done"]}


@dataclass
class PublishesThenRaises:
    """Sends the run message, waits until a worker took it, then raises as a lost connection
    would: the message went out although publishing failed."""

    engine: Engine

    def run_graph(self, graph_exec_id: str) -> None:
        self.engine.dispatcher.run_graph(graph_exec_id)
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        while self._status(graph_exec_id) is ExecutionStatus.QUEUED:
            assert time.monotonic() < deadline, "no worker took the run message"
            time.sleep(0.05)
        raise ConnectionError("connection reset while publishing")

    def _status(self, graph_exec_id: str) -> ExecutionStatus:
        return api.get_execution(graph_exec_id, USER, self.engine).status

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine.dispatcher, name)


def test_a_run_whose_message_went_out_is_not_failed_when_publishing_raises(
    cluster: Cluster, tmp_path: Path
) -> None:
    graph_id, version = api.save_graph(
        json.loads(wait_graph(tmp_path / "wait.json").read_text()), USER, cluster.engine
    )
    engine = replace(cluster.engine, dispatcher=PublishesThenRaises(cluster.engine))
    graph_exec_id = api.execute_graph(graph_id, USER, {"s": 1}, version, engine=engine)
    view = wait_for_end(cluster, graph_exec_id)
    assert view.status is ExecutionStatus.COMPLETED
    assert view.outputs == {"result": ["done"]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def private_redis(directory: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Redis of the test's own (see FAULTS.md), so that the test can kill it."""
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while not _answers(url):
            assert time.monotonic() < deadline, "the private Redis did not start"
            time.sleep(0.05)
        yield url, server
    finally:
        server.kill()
        server.wait()


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url).ping())
    except redis.ConnectionError:
        return False


def test_losing_redis_after_submission_does_not_stop_following(
    cluster: Cluster, services: Services, tmp_path: Path
) -> None:
    graph = wait_graph(tmp_path / "wait.json")
    with private_redis(tmp_path) as (redis_url, server):
        env = cluster_env(cluster, services, AUTOEXEC_REDIS_URL=redis_url)
        following = follow_until_the_wait_node_runs(env, str(graph), "--input", f"s={WAIT_SECONDS}")
        server.kill()
        code, stdout, stderr = following.finish()
    assert code == 0, stderr
    assert stdout == 'status: COMPLETED\n{\n  "result": [\n    "done"\n  ]\n}\n'
