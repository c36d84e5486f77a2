"""Cancellation of a run: its running nodes stop and end TERMINATED (more in
test_cancel_running.py)."""

from __future__ import annotations

import time
import uuid

from autoexec import api
from autoexec.statuses import TERMINAL, ExecutionStatus
from tests.integration.conftest import Cluster
from tests.integration.test_engine import graph, node
from tests.waiting import wait_for_status

S = ExecutionStatus

SLOW = graph(
    [
        node("stream", "test_slow_stream", count=8, delay=0.5),
        node("calc", "calculator", operation="add", b=1),
        node("out", "agent_output", name="n"),
    ],
    [("stream", "item", "calc", "a"), ("calc", "result", "out", "value")],
)


def start(cluster: Cluster) -> tuple[str, str]:
    owner = f"user-{uuid.uuid4().hex[:8]}"
    graph_id, _ = api.save_graph(SLOW, owner, engine=cluster.engine)
    exec_id = api.execute_graph(graph_id, owner, {}, engine=cluster.engine)
    wait_for_status(cluster.engine, exec_id, owner, S.RUNNING, timeout=30)
    return owner, exec_id


def test_cancel_stops_a_running_execution(cluster: Cluster) -> None:
    owner, exec_id = start(cluster)
    time.sleep(1.0)
    message = api.cancel(exec_id, owner, engine=cluster.engine)
    assert "cancelled" in message
    view = api.wait(exec_id, owner, timeout=10, engine=cluster.engine)
    assert view.status is S.TERMINATED
    time.sleep(1.5)  # the streaming node stops at its next yield
    view = api.get_execution(exec_id, owner, engine=cluster.engine)
    stream = next(n for n in view.node_executions if n.node_id == "stream")
    assert stream.status is S.TERMINATED
    assert len(stream.outputs.get("item", [])) < 8
    assert all(n.status in TERMINAL for n in view.node_executions)
    again = api.cancel(exec_id, owner, engine=cluster.engine)
    assert "already ended TERMINATED" in again
