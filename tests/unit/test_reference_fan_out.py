"""The reference interpreter runs a fan-out node (SPEC §8.3) as the engine does: once per
element, each output pin gathered in element order and yielded once, an empty list on each
declared output pin over no element, and a failed element failing the node with its index."""

from __future__ import annotations

from typing import Any

from autoexec.statuses import ExecutionStatus
from tests.unit.test_dataflow import execs, link, make_graph, node, run

S = ExecutionStatus


def fanned(block_id: str, pin: str, **input_default: Any) -> dict[str, Any]:
    return {**node("fan", block_id, **input_default), "fan_out": pin}


def run_fanned(fan: dict[str, Any], pin: str, elements: Any) -> Any:
    graph = make_graph(
        [node("x", "agent_input", name="x"), fan, node("out", "agent_output", name="out")],
        [link("x", "result", "fan", pin), link("fan", "result", "out", "value")],
    )
    return run(graph, inputs={"x": elements})


def test_each_output_pin_is_gathered_in_element_order_and_yielded_once() -> None:
    result = run_fanned(fanned("calculator", "b", operation="multiply", a=2), "b", [3, 1, 2])
    assert result.status is S.COMPLETED
    [fan] = execs(result, "fan")
    assert (fan.status, fan.inputs) == (
        S.COMPLETED,
        {"operation": "multiply", "a": 2, "b": [3, 1, 2]},
    )
    assert fan.outputs == [("result", [6, 2, 4])]
    assert result.outputs == {"out": [[6, 2, 4]]}


def test_a_failed_element_fails_the_node_naming_the_first_failed_index() -> None:
    result = run_fanned(fanned("calculator", "b", operation="divide", a=2), "b", [1, 0, 0])
    assert result.status is S.FAILED
    [fan] = execs(result, "fan")
    error = (
        "fan-out element 1 failed: "
        "division by zero in divide(2.0, 0.0): give b a value other than 0"
    )
    assert (fan.status, fan.error, fan.outputs) == (S.FAILED, error, [("error", error)])
    assert result.error == error


def test_an_empty_list_yields_an_empty_list_on_each_declared_output_pin() -> None:
    result = run_fanned(fanned("condition", "value1", operator=">", value2=3), "value1", [])
    [fan] = execs(result, "fan")
    assert fan.status is S.COMPLETED
    assert dict(fan.outputs) == {"result": [], "yes_output": [], "no_output": []}
    assert len(fan.outputs) == 3


def test_an_element_that_yields_nothing_on_a_pin_gives_none_there() -> None:
    result = run_fanned(fanned("condition", "value1", operator=">", value2=3), "value1", [1, 5])
    [fan] = execs(result, "fan")
    assert fan.status is S.COMPLETED
    assert dict(fan.outputs) == {
        "result": [False, True],
        "no_output": [1, None],
        "yes_output": [None, 5],
    }
    assert len(fan.outputs) == 3
