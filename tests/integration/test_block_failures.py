"""A block's failures: an infrastructure error raised by the block's own code (its own database
or Redis) fails the node at once (the engine's own such errors are retried); a transient error
is retried as the block's ``retries`` say, each run recorded."""

from __future__ import annotations

from pathlib import Path

from autoexec import api
from autoexec.statuses import ExecutionStatus
from tests.integration.conftest import Cluster
from tests.integration.test_engine import graph, node, user

S = ExecutionStatus


def test_a_blocks_own_redis_error_fails_the_node_once(cluster: Cluster) -> None:
    owner = user()
    definition = graph(
        [node("own", "test_own_redis_down"), node("err", "agent_output", name="error")],
        [("own", "error", "err", "value")],
    )
    graph_id, _ = api.save_graph(definition, owner, engine=cluster.engine)
    exec_id = api.execute_graph(graph_id, owner, {}, engine=cluster.engine)
    view = api.wait(exec_id, owner, timeout=60, engine=cluster.engine)
    (own,) = [n for n in view.node_executions if n.node_id == "own"]
    assert (own.status, own.attempt) == (S.FAILED, 1)
    assert view.outputs == {"error": ["ConnectionError: the block's own Redis is down"]}
    assert view.status is S.COMPLETED


def run_flaky(cluster: Cluster, tmp_path: Path, fail_times: int) -> api.ExecutionView:
    owner = user()
    flaky = node("flaky", "test_flaky", counter_file=str(tmp_path / "runs"), fail_times=fail_times)
    definition = graph(
        [flaky, node("runs", "agent_output", name="runs"), node("err", "agent_output", name="e")],
        [("flaky", "runs", "runs", "value"), ("flaky", "error", "err", "value")],
    )
    graph_id, _ = api.save_graph(definition, owner, engine=cluster.engine)
    exec_id = api.execute_graph(graph_id, owner, {}, engine=cluster.engine)
    return api.wait(exec_id, owner, timeout=60, engine=cluster.engine)


def test_a_transient_error_is_retried_and_each_attempt_recorded(
    cluster: Cluster, tmp_path: Path
) -> None:
    view = run_flaky(cluster, tmp_path, fail_times=2)
    assert (view.status, view.outputs) == (S.COMPLETED, {"runs": [3]})
    (flaky,) = [n for n in view.node_executions if n.node_id == "flaky"]
    assert (flaky.status, flaky.attempt) == (S.COMPLETED, 3)
    retries = flaky.stats["retries"]
    assert [(r["attempt"], r["error"]) for r in retries] == [
        (1, "TransientError: rate limited (run 1)"),
        (2, "TransientError: rate limited (run 2)"),
    ]


def test_a_transient_error_past_the_retries_fails_the_node(
    cluster: Cluster, tmp_path: Path
) -> None:
    view = run_flaky(cluster, tmp_path, fail_times=10)
    (flaky,) = [n for n in view.node_executions if n.node_id == "flaky"]
    assert (flaky.status, flaky.attempt) == (S.FAILED, 4)  # the first run and three retries
    assert flaky.error == "TransientError: rate limited (run 4)"
    assert len(flaky.stats["retries"]) == 3
    assert view.outputs == {"e": [flaky.error]}
