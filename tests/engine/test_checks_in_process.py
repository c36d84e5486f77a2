"""Checks at save and submission time, and messages that say what happened (issue 22,
findings 7 and 8), on the engine tier."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from autoexec import api, testing
from autoexec.errors import GraphWarning, InputValidationError
from autoexec.statuses import ExecutionStatus
from autoexec.testing import TestEngine
from tests.engine.conftest import MakeEngine
from tests.graphs import ADD_ONE, graph, node, user

S = ExecutionStatus


def saved(t: TestEngine, definition: dict[str, Any], owner: str, new: bool = False) -> Any:
    """``api.save_graph``'s ``(graph_id, version)`` and the GraphWarnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", GraphWarning)
        result = api.save_graph(definition, owner, engine=t.engine, new=new)
    return result, [str(w.message) for w in caught if issubclass(w.category, GraphWarning)]


def add(b: int, name: str = "adder") -> dict[str, Any]:
    return {
        **ADD_ONE,
        "name": name,
        "nodes": [*ADD_ONE["nodes"][:1], adding(b), ADD_ONE["nodes"][2]],
    }


def adding(b: int) -> dict[str, Any]:
    return node("calc", "calculator", operation="add", b=b)


# --- saving a graph whose name exists --------------------------------------------------------


def test_saving_a_changed_graph_under_an_existing_name_says_it_made_a_new_version(
    t: TestEngine,
) -> None:
    owner = user()
    (first_id, first_version), first_warnings = saved(t, add(1), owner)
    (second_id, second_version), second_warnings = saved(t, add(2), owner)

    assert (first_version, first_warnings) == (1, [])
    assert (second_id, second_version) == (first_id, 2)
    assert second_warnings == [
        f"graph 'adder': saved as version 2 of your graph of that name ({first_id}), not as "
        "a new graph: save with new=True (autoexec run --new) for a separate graph"
    ]
    # Saved again unchanged, it is the same version, with nothing to say.
    assert saved(t, add(2), owner) == ((first_id, 2), [])


def test_new_true_saves_a_separate_graph_of_the_same_name(t: TestEngine) -> None:
    owner = user()
    (first_id, _), _ = saved(t, add(1), owner)
    (second_id, version), said = saved(t, add(100), owner, new=True)

    assert second_id != first_id
    assert (version, said) == (1, [])
    # The first graph is as it was: a parent calling it still gets x + 1.
    assert t.run(first_id, {"x": 1}, owner).outputs == {"sum": [2]}
    assert t.run(second_id, {"x": 1}, owner).outputs == {"sum": [101]}


# --- agent_executor by name ------------------------------------------------------------------


def caller(graph_ref: str) -> dict[str, Any]:
    return graph(
        [
            node("x", "agent_input", name="x"),
            node("child", "agent_executor", graph_id=graph_ref),
            node("sum", "agent_output", name="sum"),
        ],
        [("x", "result", "child", "inputs_#_x"), ("child", "sum", "sum", "value")],
    )


def test_agent_executor_runs_a_graph_named_by_its_name(t: TestEngine) -> None:
    owner = user()
    child_id = t.save_graph(add(1, name="add one"), owner)
    view = t.run(t.save_graph(caller("add one"), owner), {"x": 41}, owner)

    assert view.status is S.COMPLETED, view.error
    assert view.outputs == {"sum": [42]}
    [child] = api.list_executions(owner, graph_id=child_id, engine=t.engine)
    assert child.status is S.COMPLETED


def test_agent_executor_refuses_a_name_that_several_graphs_have(t: TestEngine) -> None:
    owner = user()
    t.save_graph(add(1, name="twin"), owner)
    t.save_graph(add(2, name="twin"), owner, new=True)
    view = t.run(t.save_graph(caller("twin"), owner), {"x": 1}, owner)

    assert view.status is S.FAILED
    [child_node] = [n for n in view.node_executions if n.node_id == "child"]
    assert child_node.error is not None
    assert "2 of your graphs are named 'twin'" in child_node.error
    assert "give the graph_id of the one to run" in child_node.error


# --- graph inputs at submission --------------------------------------------------------------


def test_a_boolean_graph_input_is_refused_as_a_number_for_the_calculator(t: TestEngine) -> None:
    graph_id = t.save_graph(ADD_ONE)
    with pytest.raises(InputValidationError) as refused:
        t.submit(graph_id, {"x": True})
    assert "graph input 'x'" in str(refused.value)
    assert "True is a boolean, not a number" in str(refused.value)


def test_a_graph_input_over_max_input_bytes_is_refused_at_submission(
    make_engine: MakeEngine,
) -> None:
    t = make_engine(max_input_bytes=1024)
    owner = user()
    graph_id = t.save_graph(
        graph(
            [node("text", "agent_input", name="text"), node("out", "agent_output", name="o")],
            [("text", "result", "out", "value")],
        ),
        owner,
    )
    with pytest.raises(InputValidationError, match="graph input 'text' is 2,002 bytes of JSON"):
        t.submit(graph_id, {"text": "x" * 2000}, owner)
    assert api.list_executions(owner, engine=t.engine) == []
    assert t.run(graph_id, {"text": "x" * 1000}, owner).status is S.COMPLETED


# --- a block missing on the worker -----------------------------------------------------------


def test_a_block_the_worker_lacks_is_named_where_the_node_never_ran(
    t: TestEngine, database: Path
) -> None:
    shouting = graph(
        [
            node("x", "agent_input", name="x"),
            node("shout", "test_shout"),
            node("out", "agent_output", name="loud"),
        ],
        [("x", "result", "shout", "text"), ("shout", "result", "out", "value")],
    )
    graph_id = t.save_graph(shouting)  # saved where the block is registered
    with testing.engine(database=database) as worker_without_it:
        view = worker_without_it.run(graph_id, {"x": "hi"})

    assert view.status is S.FAILED
    assert view.error is not None and "block 'test_shout' of node 'shout'" in view.error
    [shout] = [item for item in view.never_ran if item.node_id == "shout"]
    assert shout.reason == (
        "an input arrived, but its block 'test_shout' is not registered on the worker that was "
        "to deliver it: the run stopped FAILED (see its error)"
    )
    [out] = [item for item in view.never_ran if item.node_id == "out"]
    assert out.reason == api.NO_INPUT_ARRIVED
    assert view.stats["node_error_count"] == 1
