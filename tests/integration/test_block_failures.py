"""An infrastructure error raised by a block's own code (its own database or Redis) is the
block's failure: the node ends FAILED at once, it is not retried as the engine's own
database and Redis errors are."""

from __future__ import annotations

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
