"""Sub-graphs (SPEC §8.1): an ``agent_executor`` node waits in WAITING, holding no worker and
no admission slot, while its child execution runs; the child's end resumes it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from autoexec import api
from autoexec.engine.context import Engine
from autoexec.statuses import ExecutionStatus
from autoexec.store.children import descendants
from tests.integration.conftest import Cluster, private_queues, worker_process
from tests.integration.test_cancel_running import ended, node_of
from tests.integration.test_engine import graph, node, user
from tests.waiting import wait_for_status, wait_until

S = ExecutionStatus
MAX_DEPTH = 2


@pytest.fixture(scope="module")
def engine(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One worker slot, one run slot per user, children nested at most two deep."""
    log_path = tmp_path_factory.mktemp("subgraphs") / "worker.log"
    with private_queues(cluster) as queues:
        env = {
            **queues.env,
            "AUTOEXEC_MAX_CONCURRENT_RUNS_PER_USER": "1",
            "AUTOEXEC_MAX_SUBGRAPH_DEPTH": str(MAX_DEPTH),
        }
        with worker_process(env, 1, log_path, "subgraphs"):
            yield queues.engine


def double_graph(operation: str = "multiply", b: int = 2) -> dict[str, Any]:
    return graph(
        [
            node("x", "agent_input", name="x"),
            node("calc", "calculator", operation=operation, b=b),
            node("doubled", "agent_output", name="doubled"),
            node("seen", "agent_output", name="seen"),
        ],
        [
            ("x", "result", "calc", "a"),
            ("calc", "result", "doubled", "value"),
            ("x", "result", "seen", "value"),
        ],
    )


def calling(child_id: str, output: str = "doubled") -> dict[str, Any]:
    """A graph passing its input ``x`` to ``child_id`` and its ``output`` on as ``doubled``;
    the child's error goes on as ``failure``."""
    return graph(
        [
            node("x", "agent_input", name="x"),
            node("child", "agent_executor", graph_id=child_id),
            node("doubled", "agent_output", name="doubled"),
            node("failure", "agent_output", name="failure"),
        ],
        [
            ("x", "result", "child", "inputs_#_x"),
            ("child", output, "doubled", "value"),
            ("child", "error", "failure", "value"),
        ],
    )


def chain(engine: Engine, owner: str, leaf: dict[str, Any], levels: int) -> str:
    """Save ``leaf`` and ``levels`` graphs above it, each calling the one below; the top id."""
    graph_id, _ = api.save_graph(leaf, owner, engine=engine)
    for _ in range(levels):
        graph_id, _ = api.save_graph(calling(graph_id), owner, engine=engine)
    return graph_id


def run_to_end(engine: Engine, owner: str, graph_id: str, x: Any) -> api.ExecutionView:
    exec_id = api.execute_graph(graph_id, owner, {"x": x}, engine=engine)
    return api.wait(exec_id, owner, timeout=60, engine=engine)


def family(engine: Engine, owner: str, root_id: str) -> list[api.ExecutionView]:
    """The root and its descendants, parents first."""
    with engine.db.session() as session:
        ids = [root_id, *descendants(session, root_id)]
    return [api.get_execution(i, owner, engine=engine) for i in ids]


def child_node(view: api.ExecutionView) -> api.NodeExecutionView:
    [found] = [n for n in view.node_executions if n.node_id == "child"]
    return found


def test_a_parent_completes_with_its_childs_outputs_holding_no_slot(engine: Engine) -> None:
    owner = user()
    # One worker slot and one run slot: the child can run only if the waiting parent holds
    # neither.
    parent = run_to_end(engine, owner, chain(engine, owner, double_graph(), 1), 21)
    assert parent.status is S.COMPLETED
    assert parent.outputs == {"doubled": [42]}
    parent_view, child = family(engine, owner, parent.id)
    assert child.status is S.COMPLETED
    assert child.parent_execution_id == parent.id
    assert child.outputs == {"seen": [21], "doubled": [42]}
    node = child_node(parent_view)
    assert node.status is S.COMPLETED
    assert node.outputs == {"seen": [21], "doubled": [42]}


def test_cancelling_the_root_terminates_every_level(engine: Engine) -> None:
    owner = user()
    slow = graph(
        [
            node("x", "agent_input", name="x"),
            node("wait", "wait", seconds=600),
            node("doubled", "agent_output", name="doubled"),
        ],
        [("x", "result", "wait", "data"), ("wait", "output", "doubled", "value")],
    )
    graph_id = chain(engine, owner, slow, MAX_DEPTH)
    root_id = api.execute_graph(graph_id, owner, {"x": 1}, engine=engine)
    leaf = _wait_for_running_leaf(engine, owner, root_id)
    assert wait_for_status(engine, root_id, owner, S.WAITING).status is S.WAITING
    assert "cancelled" in api.cancel(root_id, owner, engine=engine)
    views = [
        api.wait(v.id, owner, timeout=30, engine=engine) for v in family(engine, owner, root_id)
    ]
    assert [v.id for v in views][-1] == leaf
    assert [v.status for v in views] == [S.TERMINATED] * 3
    # The leaf's running node is stopped by its worker (SPEC §7: within 2 seconds).
    wait_until(lambda: ended(engine, leaf, owner, "wait"), "the leaf's wait node ended")
    views = family(engine, owner, root_id)
    assert node_of(engine, leaf, owner, "wait").status is S.TERMINATED
    left = {n.status for v in views for n in v.node_executions}
    assert not left & {S.QUEUED, S.RUNNING, S.WAITING, S.INCOMPLETE}


def _wait_for_running_leaf(engine: Engine, owner: str, root_id: str) -> str:
    def running_leaf() -> str | None:
        views = family(engine, owner, root_id)
        leaf_nodes = views[-1].node_executions if len(views) == MAX_DEPTH + 1 else []
        running = any(n.node_id == "wait" and n.status is S.RUNNING for n in leaf_nodes)
        return views[-1].id if running else None

    return wait_until(running_leaf, "the leaf's wait node running")
