"""Admission (SPEC §5): at most max_concurrent_runs_per_user RUNNING; the rest wait QUEUED and
start oldest first as slots free up."""

from __future__ import annotations

import uuid
from pathlib import Path

from autoexec import api
from autoexec.statuses import ExecutionStatus
from tests.integration.conftest import Cluster, private_queues, worker_process
from tests.integration.test_engine import graph, node

S = ExecutionStatus

PAUSE = graph(
    [
        node("x", "agent_input", name="x"),
        node("pause", "wait", seconds=0.6),
        node("out", "agent_output", name="x"),
    ],
    [("x", "result", "pause", "data"), ("pause", "output", "out", "value")],
)


def test_runs_beyond_the_user_limit_wait_and_start_oldest_first(
    cluster: Cluster, tmp_path: Path
) -> None:
    owner, other = (f"user-{uuid.uuid4().hex[:8]}" for _ in range(2))
    with private_queues(cluster) as queues:
        engine = queues.engine
        env = {**queues.env, "AUTOEXEC_MAX_CONCURRENT_RUNS_PER_USER": "2"}
        graph_id, _ = api.save_graph(PAUSE, owner, engine=engine)
        other_graph, _ = api.save_graph(PAUSE, other, engine=engine)
        with worker_process(env, 4, tmp_path / "worker.log", "admission"):
            ids = [api.execute_graph(graph_id, owner, {"x": i}, engine=engine) for i in range(5)]
            other_id = api.execute_graph(other_graph, other, {"x": 99}, engine=engine)
            views = [api.wait(i, owner, timeout=60, engine=engine) for i in ids]
            other_view = api.wait(other_id, other, timeout=60, engine=engine)
    assert [v.status for v in views] == [S.COMPLETED] * 5
    assert [v.outputs["x"] for v in views] == [[i] for i in range(5)]
    spans = [(v.started_at, v.ended_at) for v in views]
    for moment, _ in spans:
        running = sum(1 for start, end in spans if start <= moment < end)
        assert running <= 2
    # Oldest first: free slots go to the oldest waiting runs. Runs given slots at the same
    # moment may start in either order, so a run's place in the start order is at most
    # (limit - 1) away from its place in the submission order.
    start_order = sorted(range(5), key=lambda i: spans[i][0])
    assert all(abs(start_order.index(i) - i) < 2 for i in range(5)), start_order
    # Another user's run is not held back by this user's backlog.
    assert other_view.status is S.COMPLETED
    assert other_view.started_at < spans[-1][0]
