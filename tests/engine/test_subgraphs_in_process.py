"""Sub-graphs (SPEC §8.1): an ``agent_executor`` node waits in WAITING, holding no worker and
no admission slot, while its child execution runs; the child's end resumes it."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from autoexec import api
from autoexec.statuses import ExecutionStatus
from autoexec.store.children import descendants
from autoexec.testing import TestEngine
from tests.engine.conftest import MakeEngine
from tests.graphs import graph, node, user
from tests.waiting import wait_until

S = ExecutionStatus
MAX_DEPTH = 2


@pytest.fixture
def t(make_engine: MakeEngine) -> TestEngine:
    """One run slot per user, children nested at most two deep."""
    return make_engine(max_concurrent_runs_per_user=1, max_subgraph_depth=MAX_DEPTH)


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


def chain(t: TestEngine, owner: str, leaf: dict[str, Any], levels: int) -> str:
    """Save ``leaf`` and ``levels`` graphs above it, each calling the one below; the top id."""
    graph_id = t.save_graph(leaf, owner)
    for _ in range(levels):
        graph_id = t.save_graph(calling(graph_id), owner)
    return graph_id


def family(t: TestEngine, owner: str, root_id: str) -> list[api.ExecutionView]:
    """The root and its descendants, parents first."""
    with t.engine.db.session() as session:
        ids = [root_id, *descendants(session, root_id)]
    return [t.execution(i, owner) for i in ids]


def child_node(view: api.ExecutionView) -> api.NodeExecutionView:
    [found] = [n for n in view.node_executions if n.node_id == "child"]
    return found


def test_a_parent_completes_with_its_childs_outputs_holding_no_slot(t: TestEngine) -> None:
    owner = user()
    # One run slot: the child can run only if the waiting parent does not need it.
    parent = t.run(chain(t, owner, double_graph(), 1), {"x": 21}, owner)
    assert parent.status is S.COMPLETED
    assert parent.outputs == {"doubled": [42]}
    parent_view, child = family(t, owner, parent.id)
    assert child.status is S.COMPLETED
    assert child.parent_execution_id == parent.id
    assert child.outputs == {"seen": [21], "doubled": [42]}
    node_view = child_node(parent_view)
    assert node_view.status is S.COMPLETED
    assert node_view.outputs == {"seen": [21], "doubled": [42]}


def test_a_waiting_parent_shows_waiting_until_its_child_ends(t: TestEngine) -> None:
    owner = user()
    root = t.submit(chain(t, owner, double_graph(), 1), {"x": 1}, owner)
    while len(family(t, owner, root)) == 1:
        assert t.step() is not None
    parent = t.execution(root, owner)
    assert (parent.status, child_node(parent).status) == (S.WAITING, S.WAITING)
    t.drain()
    assert t.execution(root, owner).status is S.COMPLETED


def test_children_nest_three_levels_deep(t: TestEngine) -> None:
    owner = user()
    root = t.run(chain(t, owner, double_graph(), MAX_DEPTH), {"x": 5}, owner)
    assert root.status is S.COMPLETED
    assert root.outputs == {"doubled": [10]}
    views = family(t, owner, root.id)
    assert [v.status for v in views] == [S.COMPLETED] * 3
    assert [v.parent_execution_id for v in views] == [None, views[0].id, views[1].id]


def test_a_failed_child_fails_the_node_on_its_error_pin(t: TestEngine) -> None:
    owner = user()
    root = t.run(chain(t, owner, double_graph("divide", 0), 1), {"x": 3}, owner)
    _, child = family(t, owner, root.id)
    assert child.status is S.FAILED
    assert child.error == "division by zero in divide(3.0, 0.0): give b a value other than 0"
    node_view = child_node(root)
    assert node_view.status is S.FAILED
    expected = f"child graph execution {child.id} failed: {child.error}"
    assert node_view.error == expected
    # The error pin is linked: the failure is handled, and its value reaches the output.
    assert root.status is S.COMPLETED
    assert root.outputs == {"failure": [expected]}


def test_past_the_depth_limit_the_node_fails_saying_so(t: TestEngine) -> None:
    owner = user()
    root = t.run(chain(t, owner, double_graph(), MAX_DEPTH + 1), {"x": 1}, owner)
    views = family(t, owner, root.id)
    assert len(views) == MAX_DEPTH + 1  # the deepest child was never created
    deepest = child_node(views[-1])
    assert deepest.status is S.FAILED
    leaf_graph = (deepest.inputs or {})["graph_id"]
    assert deepest.error == (
        f"agent_executor: graph {leaf_graph!r} would run 3 levels deep, "
        "past the limit of 2 (AUTOEXEC_MAX_SUBGRAPH_DEPTH)"
    )
    # The deepest graph handles the error; above it, its ``failure`` output is linked nowhere.
    assert views[-1].outputs == {"failure": [deepest.error]}
    assert [v.status for v in views] == [S.COMPLETED] * 3
    assert root.outputs == {}


def test_an_unknown_child_graph_fails_the_node_saying_so(t: TestEngine) -> None:
    owner = user()
    root = t.run(t.save_graph(calling("no-such-graph"), owner), {"x": 1}, owner)
    assert root.outputs == {
        "failure": [
            "agent_executor cannot run graph 'no-such-graph': graph 'no-such-graph' not found"
        ]
    }
    assert family(t, owner, root.id) == [root]


def test_cancelling_the_root_terminates_every_level(t: TestEngine) -> None:
    owner = user()
    slow = graph(
        [
            node("x", "agent_input", name="x"),
            node("wait", "test_yield_then_wait", seconds=60),
            node("doubled", "agent_output", name="doubled"),
        ],
        [("x", "result", "wait", "seconds"), ("wait", "item", "doubled", "value")],
    )
    root_id = t.submit(chain(t, owner, slow, MAX_DEPTH), {"x": 60}, owner)
    worker = threading.Thread(target=t.drain)  # the leaf's node blocks until it is stopped
    worker.start()
    try:

        def running_leaf() -> str | None:
            views = family(t, owner, root_id)
            nodes = views[-1].node_executions if len(views) == MAX_DEPTH + 1 else []
            running = any(n.node_id == "wait" and n.status is S.RUNNING for n in nodes)
            return views[-1].id if running else None

        leaf = wait_until(running_leaf, "the leaf's wait node running")
        assert t.execution(root_id, owner).status is S.WAITING
        assert "cancelled" in api.cancel(root_id, owner, engine=t.engine)
    finally:
        worker.join()
    t.drain()
    views = family(t, owner, root_id)
    assert views[-1].id == leaf
    assert [v.status for v in views] == [S.TERMINATED] * 3
    wait_node = next(n for n in views[-1].node_executions if n.node_id == "wait")
    assert wait_node.status is S.TERMINATED
    left = {n.status for v in views for n in v.node_executions}
    assert not left & {S.QUEUED, S.RUNNING, S.WAITING, S.INCOMPLETE}
