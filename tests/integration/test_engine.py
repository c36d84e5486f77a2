"""The engine end to end on a real worker, RabbitMQ, Redis and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from autoexec import api
from autoexec.statuses import ExecutionStatus
from tests.graphs import graph, node, user
from tests.integration.conftest import Cluster, single_slot_worker

S = ExecutionStatus
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


ADD_ONE = graph(
    [
        node("x", "agent_input", name="x"),
        node("calc", "calculator", operation="add", b=1),
        node("out", "agent_output", name="sum"),
    ],
    [("x", "result", "calc", "a"), ("calc", "result", "out", "value")],
)


def run(cluster: Cluster, definition: dict[str, Any], inputs: dict[str, Any]) -> api.ExecutionView:
    owner = user()
    graph_id, _ = api.save_graph(definition, owner, engine=cluster.engine)
    exec_id = api.execute_graph(graph_id, owner, inputs, engine=cluster.engine)
    return api.wait(exec_id, owner, timeout=60, engine=cluster.engine)


def test_example_graph_runs_on_a_worker(cluster: Cluster) -> None:
    definition = json.loads((EXAMPLES / "hello.json").read_text())
    view = run(cluster, definition, {"x": 1})
    assert view.status is S.COMPLETED, cluster.worker_log()[-3000:]
    assert view.outputs == {"sum": [2], "message": ["Hello! 1 + 1 = 2"]}
    assert {n.status for n in view.node_executions} == {S.COMPLETED}
    assert view.stats["node_count"] == 5
    assert view.stats["node_error_count"] == 0


def test_downstream_starts_while_upstream_still_streams(cluster: Cluster) -> None:
    definition = graph(
        [
            node("stream", "test_slow_stream", count=4, delay=0.5),
            node("calc", "calculator", operation="multiply", b=10),
            node("out", "agent_output", name="tens"),
        ],
        [("stream", "item", "calc", "a"), ("calc", "result", "out", "value")],
    )
    view = run(cluster, definition, {})
    assert view.status is S.COMPLETED
    assert sorted(view.outputs["tens"]) == [0, 10, 20, 30]
    upstream = next(n for n in view.node_executions if n.node_id == "stream")
    first_downstream = min(n.started_at for n in view.node_executions if n.node_id == "calc")
    assert upstream.ended_at is not None and first_downstream < upstream.ended_at


def test_two_hundred_executions_in_parallel(cluster: Cluster) -> None:
    owner = user()
    graph_id, _ = api.save_graph(ADD_ONE, owner, engine=cluster.engine)
    ids = [api.execute_graph(graph_id, owner, {"x": i}, engine=cluster.engine) for i in range(200)]
    views = [api.wait(exec_id, owner, timeout=300, engine=cluster.engine) for exec_id in ids]
    assert [v.status for v in views] == [S.COMPLETED] * 200
    assert [v.outputs["sum"] for v in views] == [[i + 1] for i in range(200)]


def test_one_slot_worker_runs_twenty_graphs_at_once(cluster: Cluster, tmp_path: Path) -> None:
    definition = graph(
        [
            node("x", "agent_input", name="x"),
            node("pause", "wait", seconds=0.1),
            node("calc", "calculator", operation="add", b=1),
            node("out", "agent_output", name="sum"),
        ],
        [
            ("x", "result", "pause", "data"),
            ("pause", "output", "calc", "a"),
            ("calc", "result", "out", "value"),
        ],
    )
    owner = user()
    with single_slot_worker(cluster, tmp_path / "single.log") as engine:
        graph_id, _ = api.save_graph(definition, owner, engine=engine)
        ids = [api.execute_graph(graph_id, owner, {"x": i}, engine=engine) for i in range(20)]
        views = [api.wait(exec_id, owner, timeout=120, engine=engine) for exec_id in ids]
    assert [v.status for v in views] == [S.COMPLETED] * 20
    assert [v.outputs["sum"] for v in views] == [[i + 1] for i in range(20)]


def test_send_task_by_name_from_an_app_without_autoexec(cluster: Cluster) -> None:
    owner = user()
    graph_id, _ = api.save_graph(ADD_ONE, owner, engine=cluster.engine)
    settings = cluster.engine.settings
    script = f"""
import sys
sys.modules["autoexec"] = None  # this client cannot import autoexec
try:
    import autoexec
except ImportError:
    pass
else:
    raise SystemExit("autoexec was importable")
from celery import Celery
client = Celery(broker={settings.broker_url!r}, backend={settings.redis_url!r})
result = client.send_task(
    "autoexec.run_graph",
    kwargs={{"graph_id": {graph_id!r}, "user_id": {owner!r}, "inputs": {{"x": 41}}}},
    queue={cluster.inbox_queue!r},
)
print(result.get(timeout=60))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    exec_id = done.stdout.strip().splitlines()[-1]
    view = api.wait(exec_id, owner, timeout=60, engine=cluster.engine)
    assert view.status is S.COMPLETED
    assert view.outputs == {"sum": [42]}
