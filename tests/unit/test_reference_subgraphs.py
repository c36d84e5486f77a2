"""The reference interpreter runs an ``agent_executor``'s child graph inline (SPEC §8.1)."""

from __future__ import annotations

from typing import Any

from autoexec.graph import Graph
from autoexec.statuses import ExecutionStatus
from tests.unit.test_dataflow import execs, link, node, output_values, run

S = ExecutionStatus


def graph_of(graph_id: str, nodes: list[dict[str, Any]], links: list[dict[str, Any]]) -> Graph:
    return Graph.model_validate(
        {"id": graph_id, "version": 1, "user_id": "u", "name": graph_id, "nodes": nodes,
         "links": links}
    )  # fmt: skip


DOUBLE = graph_of(
    "double",
    [
        node("x", "agent_input", name="x"),
        node("calc", "calculator", operation="multiply", b=2),
        node("doubled", "agent_output", name="doubled"),
        node("seen", "agent_output", name="seen"),
    ],
    [
        link("x", "result", "calc", "a"),
        link("calc", "result", "doubled", "value"),
        link("x", "result", "seen", "value"),
    ],
)

PARENT = graph_of(
    "parent",
    [
        node("n", "agent_input", name="n"),
        node("child", "agent_executor", graph_id="double"),
        node("out", "agent_output", name="result"),
        node("failure", "agent_output", name="failure"),
    ],
    [
        link("n", "result", "child", "inputs_#_x"),
        link("child", "doubled", "out", "value"),
        link("child", "error", "failure", "value"),
    ],
)


def test_a_child_graph_runs_inline_and_its_outputs_are_the_nodes_outputs() -> None:
    result = run(PARENT, inputs={"n": 21}, children={"double": DOUBLE})
    assert result.status is S.COMPLETED
    assert result.outputs == {"result": [42]}
    [child] = execs(result, "child")
    assert child.outputs == [("seen", 21), ("doubled", 42)]  # name by name, first yielded first


def test_a_child_graph_may_be_given_by_a_callable() -> None:
    asked: list[tuple[str, int | None]] = []

    def children(graph_id: str, version: int | None) -> Graph:
        asked.append((graph_id, version))
        return DOUBLE

    assert run(PARENT, inputs={"n": 1}, children=children).outputs == {"result": [2]}
    assert asked == [("double", None)]


def test_a_failed_child_fails_the_node_on_its_error_pin() -> None:
    result = run(PARENT, inputs={"n": "not a number"}, children={"double": DOUBLE})
    [child] = execs(result, "child")
    assert child.status is S.FAILED
    [error] = output_values(child, "error")
    assert error.startswith("ChildGraphError: child graph 'double' failed:")
    assert result.outputs == {"failure": [error]}


def test_without_the_child_graph_the_node_fails_saying_so() -> None:
    result = run(PARENT, inputs={"n": 1})
    [child] = execs(result, "child")
    assert child.status is S.FAILED
    assert "cannot run child graph 'double': give it ``children``" in (child.error or "")
    assert run(PARENT, inputs={"n": 1}, children={}).outputs == {
        "failure": ["ChildGraphError: child graph 'double' not found"]
    }
