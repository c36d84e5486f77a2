"""Node time limits (SPEC §7): ``timeout_seconds`` on the node, on the block, and the
AUTOEXEC_NODE_TIMEOUT_SECONDS default, enforced for a sync block blocked in one call (on the
prefork and the threads pool), an async block awaiting, and a block that keeps yielding; and a
node that kills its worker every time, which ends FAILED after AUTOEXEC_MAX_WORKER_LOSSES
instead of looping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autoexec import api
from autoexec.engine.context import Engine
from autoexec.statuses import ExecutionStatus
from tests.integration.conftest import Cluster, private_queues, worker_process
from tests.integration.test_engine import graph, node, user

S = ExecutionStatus
# Far longer than any limit below: a block that is not stopped makes the wait time out.
LONG = 120.0


def with_error_out(block_node: dict[str, Any]) -> dict[str, Any]:
    """``block_node`` with its ``error`` pin and its first output led to graph outputs."""
    return graph(
        [block_node, node("err", "agent_output", name="error")],
        [(block_node["id"], "error", "err", "value")],
    )


def run(cluster: Cluster, definition: dict[str, Any], timeout: float = 60) -> api.ExecutionView:
    return run_on(cluster.engine, definition, timeout)


def run_on(engine: Engine, definition: dict[str, Any], timeout: float = 60) -> api.ExecutionView:
    owner = user()
    graph_id, _ = api.save_graph(definition, owner, engine=engine)
    exec_id = api.execute_graph(graph_id, owner, {}, engine=engine)
    return api.wait(exec_id, owner, timeout=timeout, engine=engine)


def the_node(view: api.ExecutionView, node_id: str) -> Any:
    (found,) = [n for n in view.node_executions if n.node_id == node_id]
    return found


def test_a_sync_block_blocked_past_its_node_timeout_fails_with_a_timeout_error(
    cluster: Cluster,
) -> None:
    sleeper = {**node("nap", "test_sleep", seconds=LONG), "timeout_seconds": 1}
    view = run(cluster, with_error_out(sleeper))
    nap = the_node(view, "nap")
    assert nap.status is S.FAILED
    assert nap.error == (
        "node 'nap' timed out: it ran longer than its limit of 1 s (timeout_seconds)"
    )
    # The error pin is handled, so the run completes, and says why.
    assert view.status is S.COMPLETED
    assert view.outputs == {"error": [nap.error]}
    assert nap.stats["walltime"] < LONG


def test_a_sync_block_blocked_past_its_timeout_on_the_threads_pool_fails_and_frees_its_slot(
    cluster: Cluster, tmp_path: Path
) -> None:
    sleeper = {**node("nap", "test_sleep", seconds=LONG), "timeout_seconds": 1}
    with (
        private_queues(cluster) as queues,
        worker_process(queues.env, 1, tmp_path / "w.log", "timeout-threads", pool="threads"),
    ):
        view = run_on(queues.engine, with_error_out(sleeper))
        # The only thread of the pool runs the next graph while the block still sleeps.
        after = run_here(queues.engine, user())
    nap = the_node(view, "nap")
    assert nap.status is S.FAILED
    assert nap.error == (
        "node 'nap' timed out: it ran longer than its limit of 1 s (timeout_seconds)"
    )
    assert (view.status, view.outputs) == (S.COMPLETED, {"error": [nap.error]})
    assert nap.stats["walltime"] < LONG
    assert (after.status, after.outputs) == (S.COMPLETED, {"sum": [3]})


def test_an_async_block_past_its_block_timeout_fails(cluster: Cluster) -> None:
    view = run(cluster, with_error_out(node("nap", "test_async_sleep", seconds=LONG)))
    nap = the_node(view, "nap")
    assert (nap.status, view.status) == (S.FAILED, S.COMPLETED)
    assert view.outputs["error"] == [
        "node 'nap' timed out: it ran longer than its limit of 1 s (timeout_seconds)"
    ]


def test_a_streaming_node_past_its_timeout_records_nothing_after_it(cluster: Cluster) -> None:
    streamer = {
        **node("stream", "test_slow_stream", count=10_000, delay=0.05),
        "timeout_seconds": 1.5,
    }
    definition = graph(
        [streamer, node("items", "agent_output", name="items")],
        [("stream", "item", "items", "value")],
    )
    view = run(cluster, definition)
    stream = the_node(view, "stream")
    assert stream.status is S.FAILED  # unhandled error pin: the run fails
    assert view.status is S.FAILED
    assert stream.error is not None and "timed out" in stream.error
    items = view.outputs["items"]
    assert 0 < len(items) < 10_000
    # Each item runs its own output node, two at a time: they may end in any order.
    assert sorted(items) == list(range(len(items)))  # none lost or doubled


def test_the_default_timeout_setting_applies_to_nodes_without_one(
    cluster: Cluster, tmp_path: Path
) -> None:
    owner = user()
    definition = with_error_out(node("nap", "test_sleep", seconds=LONG))
    with private_queues(cluster) as queues:
        env = {**queues.env, "AUTOEXEC_NODE_TIMEOUT_SECONDS": "1"}
        with worker_process(env, 1, tmp_path / "w.log", "timeout-default"):
            graph_id, _ = api.save_graph(definition, owner, engine=queues.engine)
            exec_id = api.execute_graph(graph_id, owner, {}, engine=queues.engine)
            view = api.wait(exec_id, owner, timeout=60, engine=queues.engine)
    assert view.outputs == {
        "error": ["node 'nap' timed out: it ran longer than its limit of 1 s (timeout_seconds)"]
    }


def test_a_node_that_kills_its_worker_every_time_ends_failed_after_the_limit(
    cluster: Cluster, tmp_path: Path
) -> None:
    owner = user()
    definition = with_error_out(node("boom", "test_kill_worker"))
    with private_queues(cluster) as queues:
        env = {**queues.env, "AUTOEXEC_MAX_WORKER_LOSSES": "2"}
        with worker_process(env, 1, tmp_path / "w.log", "losses"):
            graph_id, _ = api.save_graph(definition, owner, engine=queues.engine)
            exec_id = api.execute_graph(graph_id, owner, {}, engine=queues.engine)
            view = api.wait(exec_id, owner, timeout=90, engine=queues.engine)
            # The worker lives on and runs the next graph.
            after = run_here(queues.engine, owner)
    boom = the_node(view, "boom")
    assert boom.status is S.FAILED
    assert boom.error == (
        "node 'boom' (test_kill_worker): the worker running it was lost 2 times "
        "(killed or crashed mid-run); not run again (AUTOEXEC_MAX_WORKER_LOSSES=2)"
    )
    assert boom.attempt == 3  # two runs lost, then the third delivery failed it
    assert view.outputs == {"error": [boom.error]}
    assert (after.status, after.outputs) == (S.COMPLETED, {"sum": [3]})


def run_here(engine: Any, owner: str) -> api.ExecutionView:
    definition = graph(
        [
            node("x", "agent_input", name="x"),
            node("calc", "calculator", operation="add", b=1),
            node("out", "agent_output", name="sum"),
        ],
        [("x", "result", "calc", "a"), ("calc", "result", "out", "value")],
    )
    graph_id, _ = api.save_graph(definition, owner, engine=engine)
    exec_id = api.execute_graph(graph_id, owner, {"x": 2}, engine=engine)
    return api.wait(exec_id, owner, timeout=60, engine=engine)
