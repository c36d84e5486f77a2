"""A block's failures: an infrastructure error raised by the block's own code fails the node
at once; a transient error is retried as the block's ``retries`` say, each run recorded."""

from __future__ import annotations

from pathlib import Path

from autoexec import api
from autoexec.statuses import ExecutionStatus
from autoexec.testing import EXECUTE_NODE, TestEngine
from tests.graphs import graph, node

S = ExecutionStatus


def test_a_blocks_own_redis_error_fails_the_node_once(t: TestEngine) -> None:
    definition = graph(
        [node("own", "test_own_redis_down"), node("err", "agent_output", name="error")],
        [("own", "error", "err", "value")],
    )
    view = t.run(t.save_graph(definition))
    (own,) = [n for n in view.node_executions if n.node_id == "own"]
    assert (own.status, own.attempt) == (S.FAILED, 1)
    assert view.outputs == {"error": ["ConnectionError: the block's own Redis is down"]}
    assert view.status is S.COMPLETED


def run_flaky(t: TestEngine, tmp_path: Path, fail_times: int) -> api.ExecutionView:
    flaky = node("flaky", "test_flaky", counter_file=str(tmp_path / "runs"), fail_times=fail_times)
    definition = graph(
        [flaky, node("runs", "agent_output", name="runs"), node("err", "agent_output", name="e")],
        [("flaky", "runs", "runs", "value"), ("flaky", "error", "err", "value")],
    )
    return t.run(t.save_graph(definition))


def test_a_transient_error_is_retried_and_each_attempt_recorded(
    t: TestEngine, tmp_path: Path
) -> None:
    view = run_flaky(t, tmp_path, fail_times=2)
    assert (view.status, view.outputs) == (S.COMPLETED, {"runs": [3]})
    (flaky,) = [n for n in view.node_executions if n.node_id == "flaky"]
    assert (flaky.status, flaky.attempt) == (S.COMPLETED, 3)
    retries = flaky.stats["retries"]
    assert [(r["attempt"], r["error"]) for r in retries] == [
        (1, "TransientError: rate limited (run 1)"),
        (2, "TransientError: rate limited (run 2)"),
    ]
    # Each retry is the node's message sent again (after its backoff), known as a rerun.
    sends = [job for job in t.dispatcher.sent if job.kind == EXECUTE_NODE]
    flaky_sends = [job for job in sends if job.node_id == "flaky"]
    assert [job.rerun for job in flaky_sends] == [False, True, True]
    assert len({job.task_id for job in flaky_sends}) == 1


def test_a_transient_error_past_the_retries_fails_the_node(t: TestEngine, tmp_path: Path) -> None:
    view = run_flaky(t, tmp_path, fail_times=10)
    (flaky,) = [n for n in view.node_executions if n.node_id == "flaky"]
    assert (flaky.status, flaky.attempt) == (S.FAILED, 4)  # the first run and three retries
    assert flaky.error == "TransientError: rate limited (run 4)"
    assert len(flaky.stats["retries"]) == 3
    assert view.outputs == {"e": [flaky.error]}
