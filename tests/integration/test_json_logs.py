"""``AUTOEXEC_LOG_FORMAT=json`` on a real worker (``celery -A autoexec worker``): autoexec's
lines are JSON objects, a node's with its context as keys, and no input value is logged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autoexec import api
from autoexec.statuses import ExecutionStatus
from tests.integration.conftest import Cluster, private_queues, worker_process
from tests.integration.test_engine import ADD_ONE, user

SECRET = 7_340_021_913


def test_a_json_worker_logs_each_node_line_as_json_with_its_context(
    cluster: Cluster, tmp_path: Path
) -> None:
    log_path = tmp_path / "worker.log"
    owner = user()
    with private_queues(cluster) as queues:
        env = {**queues.env, "AUTOEXEC_LOG_FORMAT": "json"}
        with worker_process(env, 1, log_path, "json-logs"):
            graph_id, _ = api.save_graph(ADD_ONE, owner, engine=queues.engine)
            exec_id = api.execute_graph(graph_id, owner, {"x": SECRET}, engine=queues.engine)
            view = api.wait(exec_id, owner, timeout=60, engine=queues.engine)
    assert (view.status, view.outputs) == (ExecutionStatus.COMPLETED, {"sum": [SECRET + 1]})
    log = log_path.read_text()
    about_the_run = [json.loads(line) for line in log.splitlines() if exec_id in line]
    by_node = node_lines(about_the_run)
    assert set(by_node) == {node.id for node in view.node_executions}
    for node in view.node_executions:
        context = {
            "user": owner,
            "graph": graph_id,
            "graph_exec": exec_id,
            "node": node.node_id,
            "node_exec": node.id,
            "block": node.block_id,
        }
        outputs = sum(map(len, node.outputs.values()))
        assert by_node[node.id] == [
            {**context, "level": "INFO", "message": "started"},
            {**context, "level": "INFO", "message": f"completed with {outputs} output(s)"},
        ]
    assert str(SECRET) not in log


def node_lines(entries: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """The ``autoexec.node`` entries of each node execution, without time and logger."""
    by_node: dict[int, list[dict[str, Any]]] = {}
    for entry in entries:
        if entry["logger"] == "autoexec.node":
            kept = {k: v for k, v in entry.items() if k not in ("time", "logger")}
            by_node.setdefault(entry["node_exec"], []).append(kept)
    return by_node
