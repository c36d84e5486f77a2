"""Flower (``celery -A autoexec flower``) on the test cluster's broker: its HTTP API, opened as
docs/observability.md says, lists autoexec's tasks under their names."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from autoexec import api
from autoexec.celery_app import app
from tests.conftest import Services
from tests.integration.conftest import Cluster
from tests.integration.test_engine import ADD_ONE, graph, node, user
from tests.integration.test_task_events import send_from_plain_celery

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_SECONDS = 60.0
ECHO = graph(
    [node("key", "agent_input", name="key"), node("echo", "agent_output", name="echo")],
    [("key", "result", "echo", "value")],
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def get(url: str, credentials: str | None = None) -> tuple[int, str]:
    """GET ``url`` (with basic auth ``user:password`` if given): the status code and body."""
    request = urllib.request.Request(url)
    if credentials is not None:
        token = base64.b64encode(credentials.encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@contextmanager
def flower(env: dict[str, str], log_path: Path, *options: str) -> Iterator[str]:
    """``celery -A autoexec flower`` on a free port; yields its base URL."""
    port = free_port()
    command = [
        sys.executable, "-m", "celery", "-A", "autoexec", "flower",
        f"--port={port}", "--address=127.0.0.1", *options,
    ]  # fmt: skip
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**inherited, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(process, base, log_path)
        yield base
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_until_up(process: subprocess.Popen[bytes], base: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"flower exited at start:\n{log_path.read_text(errors='replace')}")
        try:
            if get(f"{base}/healthcheck") == (200, "OK"):
                return
        except OSError:
            pass  # not listening yet
        time.sleep(0.2)
    pytest.fail(f"flower not up in {START_TIMEOUT_SECONDS}s:\n{log_path.read_text()}")


def listed_tasks(base: str) -> dict[str, dict[str, Any]]:
    status, body = get(f"{base}/api/tasks")
    assert status == 200, body
    tasks: dict[str, dict[str, Any]] = json.loads(body)
    return tasks


def wait_until_receiving_events(base: str) -> None:
    """Flower sees only the events sent after its event consumer is bound: send probe events
    until one is listed."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    with app.events.default_dispatcher() as dispatcher:
        while time.monotonic() < deadline:
            probe = f"probe-{uuid.uuid4()}"
            dispatcher.send("task-sent", uuid=probe, name="flower-probe")
            time.sleep(0.5)
            if probe in listed_tasks(base):
                return
    pytest.fail(f"flower received no event in {START_TIMEOUT_SECONDS}s")


def wait_for_succeeded_task(base: str, name: str, argument: str) -> dict[str, Any]:
    """The task ``name`` whose kwargs mention ``argument``, once Flower shows it SUCCESS."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        for task in listed_tasks(base).values():
            if task["name"] == name and argument in task["kwargs"] and task["state"] == "SUCCESS":
                return task
        time.sleep(0.2)
    pytest.fail(f"flower listed no finished {name} task for {argument}")


def test_flower_api_lists_the_run_graph_task_of_a_run(cluster: Cluster, tmp_path: Path) -> None:
    owner = f"user-{uuid.uuid4().hex[:8]}"
    graph_id, _ = api.save_graph(ADD_ONE, owner, engine=cluster.engine)
    opened = {"FLOWER_UNAUTHENTICATED_API": "true"}
    with flower(opened, tmp_path / "flower.log") as base:
        wait_until_receiving_events(base)
        exec_id = api.execute_graph(graph_id, owner, {"x": 1}, engine=cluster.engine)
        assert api.wait(exec_id, owner, timeout=60, engine=cluster.engine).outputs == {"sum": [2]}
        task = wait_for_succeeded_task(base, "autoexec.run_graph", exec_id)
    assert task["kwargs"] == repr({"graph_exec_id": exec_id})
    assert task["result"] == repr(exec_id)


def wait_for_succeeded_tasks(
    base: str, name: str, argument: str, count: int
) -> list[dict[str, Any]]:
    """The ``count`` tasks ``name`` whose args mention ``argument``, once all are SUCCESS."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        found = [
            task
            for task in listed_tasks(base).values()
            if task["name"] == name and argument in task["args"] and task["state"] == "SUCCESS"
        ]
        if len(found) == count:
            return found
        time.sleep(0.2)
    pytest.fail(f"flower listed no {count} finished {name} tasks for {argument}")


def test_flower_shows_node_tasks_by_their_ids_and_never_an_input_value(
    cluster: Cluster, tmp_path: Path
) -> None:
    owner = user()
    graph_id, _ = api.save_graph(ECHO, owner, engine=cluster.engine)
    secret = f"sk-live-{uuid.uuid4().hex}"
    kwargs = {"graph_id": graph_id, "user_id": owner, "inputs": {"key": secret}}
    with flower({"FLOWER_UNAUTHENTICATED_API": "true"}, tmp_path / "flower.log") as base:
        wait_until_receiving_events(base)
        runs = [
            str(app.send_task("autoexec.run_graph", kwargs=kwargs).get(timeout=30)),
            send_from_plain_celery(cluster, kwargs),
        ]
        for exec_id in runs:
            view = api.wait(exec_id, owner, timeout=60, engine=cluster.engine)
            assert view.outputs == {"echo": [secret]}
            shown = wait_for_succeeded_tasks(base, "autoexec.execute_node", exec_id, 2)
            assert sorted(task["args"] for task in shown) == sorted(
                f"({n.id}, {exec_id!r}, node={n.node_id!r}, block={n.block_id!r})"
                for n in view.node_executions
            )
            wait_for_succeeded_task(base, "autoexec.run_graph", "'inputs': ['key']")
        status, body = get(f"{base}/api/tasks")
    assert status == 200
    assert body.count("'inputs': ['key']") == 2
    assert secret not in body


def test_flower_api_with_basic_auth_needs_the_credentials(
    services: Services, tmp_path: Path
) -> None:
    with flower({}, tmp_path / "flower.log", "--basic-auth=ops:s3cret") as base:
        assert get(f"{base}/api/tasks")[0] == 401
        assert get(f"{base}/api/tasks", "ops:wrong")[0] == 401
        assert get(f"{base}/api/tasks", "ops:s3cret")[0] == 200
