"""Reading a busy execution on the real cluster: every read is one consistent snapshot, through
the API and through the real ``autoexec`` command; listing, summary and rerun on the cluster."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoexec import api
from autoexec.errors import InputValidationError, NotFoundError
from autoexec.statuses import ExecutionStatus
from tests.integration.conftest import Cluster

S = ExecutionStatus
ROOT = Path(__file__).resolve().parents[2]
AUTOEXEC = str(Path(sys.executable).parent / "autoexec")
COUNT_LOOP = json.loads((ROOT / "examples" / "count_loop.json").read_text())
LONG_LOOP_LIMIT = 150
STATUS_CALLS = 12
FINISH_TIMEOUT = 300


def user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


def cli_env(cluster: Cluster) -> dict[str, str]:
    """This process's cluster settings, with a broker URL so the command talks to the cluster
    (and the test blocks importable, as the cluster's ``AUTOEXEC_BLOCK_MODULES`` names them)."""
    settings = cluster.engine.settings
    return {
        **os.environ,
        "AUTOEXEC_DATABASE_URL": cluster.database_url,
        # The cluster's own queues: a command that submits must reach the test's workers.
        "AUTOEXEC_GRAPH_QUEUE": cluster.graph_queue,
        "AUTOEXEC_NODE_QUEUE": cluster.node_queue,
        "AUTOEXEC_INBOX_QUEUE": cluster.inbox_queue,
        "AUTOEXEC_BROKER_URL": settings.broker_url,
        "AUTOEXEC_REDIS_URL": settings.redis_url,
        "PYTHONPATH": str(ROOT),
    }


def autoexec(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AUTOEXEC, *args],
        cwd=ROOT,
        env=cli_env(cluster),
        capture_output=True,
        text=True,
        timeout=120,
    )


def start_loop(cluster: Cluster, owner: str, limit: int) -> str:
    graph_id, version = api.save_graph(COUNT_LOOP, owner, engine=cluster.engine)
    return api.execute_graph(graph_id, owner, {"limit": limit}, version, engine=cluster.engine)


@pytest.fixture
def long_loop(cluster: Cluster) -> Iterator[tuple[str, str]]:
    """``(owner, execution id)`` of a running count_loop that takes a while; cancelled after."""
    owner = user()
    exec_id = start_loop(cluster, owner, LONG_LOOP_LIMIT)
    yield owner, exec_id
    api.cancel(exec_id, owner, engine=cluster.engine)


def outputs_carried_by_nodes(view: api.ExecutionView, node_id: str) -> list[object]:
    return [
        value
        for node in view.node_executions
        if node.node_id == node_id
        for value in node.outputs.get("output", [])
    ]


def test_reads_of_a_running_loop_are_consistent_snapshots(
    cluster: Cluster, long_loop: tuple[str, str]
) -> None:
    owner, exec_id = long_loop
    views = []
    view = api.get_execution(exec_id, owner, engine=cluster.engine)
    while not view.is_finished:
        views.append(view)
        view = api.get_execution(exec_id, owner, engine=cluster.engine)
    running = [v for v in views if v.status is S.RUNNING and v.node_executions]
    assert len(running) > 1, "the loop ended before it could be read while running"
    for seen in [*views, view]:
        steps = seen.outputs.get("steps", [])
        assert steps == list(range(len(steps)))
        assert steps == outputs_carried_by_nodes(seen, "steps")
    assert view.status is S.COMPLETED
    assert view.outputs == {"steps": list(range(LONG_LOOP_LIMIT)), "final": [LONG_LOOP_LIMIT]}


def test_status_command_reads_a_running_loop_without_crashing(
    cluster: Cluster, long_loop: tuple[str, str]
) -> None:
    owner, exec_id = long_loop
    statuses = []
    for _ in range(STATUS_CALLS):
        shown = autoexec(cluster, "status", exec_id, "--user", owner, "--json")
        assert shown.returncode == 0, shown.stderr
        view = api.ExecutionView.model_validate_json(shown.stdout)
        assert view.outputs.get("steps", []) == outputs_carried_by_nodes(view, "steps")
        statuses.append(view.status)
    assert statuses.count(S.RUNNING) > 1, "the loop ended before it could be read while running"
    summary = autoexec(cluster, "status", exec_id, "--user", owner)
    assert summary.returncode == 0, summary.stderr
    assert f"execution {exec_id}" in summary.stdout.splitlines()


def test_rerun_detached_on_the_cluster_starts_the_same_run_again(cluster: Cluster) -> None:
    owner = user()
    first = start_loop(cluster, owner, 4)
    api.wait(first, owner, timeout=FINISH_TIMEOUT, engine=cluster.engine)

    rerun = autoexec(cluster, "rerun", first, "--user", owner, "--detach")
    assert rerun.returncode == 0, rerun.stderr
    second = rerun.stdout.strip()
    ended = api.wait(second, owner, timeout=FINISH_TIMEOUT, engine=cluster.engine)
    assert ended.status is S.COMPLETED
    assert ended.inputs == {"limit": 4}
    assert ended.outputs == {"steps": [0, 1, 2, 3], "final": [4]}

    listed = autoexec(cluster, "executions", "--user", owner)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == [second, first]


def test_list_executions_and_rerun_refuse_bad_arguments(cluster: Cluster) -> None:
    owner = user()
    unknown = (
        "unknown status 'done': use one of "
        "QUEUED, RUNNING, COMPLETED, FAILED, TERMINATED, REVIEW, WAITING"
    )
    with pytest.raises(InputValidationError, match=re.escape(unknown)):
        api.list_executions(owner, status="done", engine=cluster.engine)
    with pytest.raises(InputValidationError, match="limit must be at least 1, not 0"):
        api.list_executions(owner, limit=0, engine=cluster.engine)
    first = start_loop(cluster, owner, 1)
    with pytest.raises(NotFoundError, match=f"graph execution '{first}' not found"):
        api.rerun(first, user(), engine=cluster.engine)
    api.wait(first, owner, timeout=FINISH_TIMEOUT, engine=cluster.engine)
    rows = api.list_executions(owner, status="completed", engine=cluster.engine)
    assert [(r.id, r.graph_name, r.status) for r in rows] == [(first, "count_loop", S.COMPLETED)]
