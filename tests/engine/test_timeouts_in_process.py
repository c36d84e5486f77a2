"""Node time limits in-process: the node runs in the test's main thread, where its limit is a
SIGALRM (autoexec.timeouts), as on a prefork worker."""

from __future__ import annotations

from autoexec.statuses import ExecutionStatus
from autoexec.testing import TestEngine
from tests.graphs import graph, node

S = ExecutionStatus
LONG = 120.0  # far longer than the limit: a block that is not stopped fails the test


def test_a_sync_block_blocked_past_its_node_timeout_fails_with_a_timeout_error(
    t: TestEngine,
) -> None:
    sleeper = {**node("nap", "test_sleep", seconds=LONG), "timeout_seconds": 0.5}
    definition = graph(
        [sleeper, node("err", "agent_output", name="error")], [("nap", "error", "err", "value")]
    )
    view = t.run(t.save_graph(definition))
    [nap] = [n for n in view.node_executions if n.node_id == "nap"]
    assert nap.status is S.FAILED
    assert nap.error == (
        "node 'nap' timed out: it ran longer than its limit of 0.5 s (timeout_seconds)"
    )
    assert view.status is S.COMPLETED
    assert view.outputs == {"error": [nap.error]}
    assert nap.stats["walltime"] < LONG
