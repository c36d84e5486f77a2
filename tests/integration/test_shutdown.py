"""Graceful shutdown (SPEC §7): a worker told to stop while a node runs lets it finish for
AUTOEXEC_WORKER_SHUTDOWN_TIMEOUT_SECONDS, then hands it back to the queue; another worker runs
it, and the run completes with exact outputs. Nothing is left RUNNING without an owner."""

from __future__ import annotations

import signal
from pathlib import Path

from autoexec import api
from autoexec.statuses import ExecutionStatus
from tests.integration.conftest import Cluster, private_queues, worker_process
from tests.integration.test_engine import graph, node, user
from tests.waiting import wait_until

S = ExecutionStatus


def test_sigterm_mid_node_hands_the_node_to_the_next_worker(
    cluster: Cluster, tmp_path: Path
) -> None:
    owner = user()
    definition = graph(
        [node("nap", "test_sleep", seconds=4), node("out", "agent_output", name="slept")],
        [("nap", "done", "out", "value")],
    )
    with private_queues(cluster) as queues:
        engine = queues.engine
        env = {
            **queues.env,
            "REMAP_SIGTERM": "SIGQUIT",
            "AUTOEXEC_WORKER_SHUTDOWN_TIMEOUT_SECONDS": "0.5",
        }
        with worker_process(env, 1, tmp_path / "first.log", "first") as first:
            graph_id, _ = api.save_graph(definition, owner, engine=engine)
            exec_id = api.execute_graph(graph_id, owner, {}, engine=engine)
            wait_until(
                lambda: any(
                    n.node_id == "nap" and n.status is S.RUNNING
                    for n in api.get_execution(exec_id, owner, engine=engine).node_executions
                ),
                "the node running",
            )
            first.send_signal(signal.SIGTERM)
            assert first.wait(timeout=60) == 0
        log = (tmp_path / "first.log").read_text()
        assert "Initiating Soft Shutdown" in log
        with worker_process(env, 1, tmp_path / "second.log", "second"):
            view = api.wait(exec_id, owner, timeout=60, engine=engine)
    assert (view.status, view.outputs) == (S.COMPLETED, {"slept": [4.0]})
    (nap,) = [n for n in view.node_executions if n.node_id == "nap"]
    assert (nap.status, nap.attempt) == (S.COMPLETED, 2)  # handed back, then run again
