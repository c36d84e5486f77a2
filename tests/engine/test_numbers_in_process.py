"""One rule for numbers (issue 22): JSON has no inf or NaN. A node output that is not finite
fails that node naming the pin, here and in the reference interpreter; a graph input or node
input mask that is not finite is refused at submission, naming it; and an error of the engine
while recording a node's run fails the node instead of leaving it RUNNING."""

from __future__ import annotations

import math
from typing import Any

import pytest

from autoexec import api
from autoexec.engine import inline
from autoexec.errors import InputValidationError
from autoexec.graph import Graph
from autoexec.reference import run_reference
from autoexec.statuses import ExecutionStatus
from autoexec.testing import DEFAULT_USER, TestEngine
from tests.graphs import MULTIPLY, NOT_FINITE, graph, node

S = ExecutionStatus
PRODUCT_NOT_FINITE = f"output 'result' is not JSON-serializable: {NOT_FINITE}"


def node_named(view: api.ExecutionView, node_id: str) -> api.NodeExecutionView:
    (found,) = [n for n in view.node_executions if n.node_id == node_id]
    return found


def test_an_output_that_overflows_to_inf_fails_its_node_naming_the_pin(t: TestEngine) -> None:
    view = t.run(t.save_graph(MULTIPLY), {"a": 1e300, "b": 1e300})
    calc = node_named(view, "calc")
    assert (calc.status, calc.error) == (S.FAILED, PRODUCT_NOT_FINITE)
    assert view.status is S.FAILED
    assert view.outputs == {}


@pytest.mark.parametrize("number", ["nan", "-inf"])
def test_a_non_finite_number_deep_inside_an_output_fails_the_node(
    t: TestEngine, number: str
) -> None:
    definition = graph(
        [
            node("float", "test_nested_float", number=number),
            node("out", "agent_output", name="out"),
            node("err", "agent_output", name="error"),
        ],
        [("float", "nested", "out", "value"), ("float", "error", "err", "value")],
    )
    view = t.run(t.save_graph(definition))
    expected = f"output 'nested' is not JSON-serializable: {NOT_FINITE}"
    assert node_named(view, "float").status is S.FAILED
    assert view.outputs == {"error": [expected]}


def test_a_finite_nested_output_still_goes_through(t: TestEngine) -> None:
    definition = graph(
        [node("float", "test_nested_float", number="1.5"), node("out", "agent_output", name="o")],
        [("float", "nested", "out", "value")],
    )
    view = t.run(t.save_graph(definition))
    assert (view.status, view.outputs) == (S.COMPLETED, {"o": [{"values": [1.0, 1.5]}]})


def test_the_reference_interpreter_fails_the_node_the_same_way(t: TestEngine) -> None:
    reference_graph = Graph.model_validate({**MULTIPLY, "id": "g", "version": 1, "user_id": "u"})
    inputs = {"a": 1e300, "b": 1e300}
    result = run_reference(reference_graph, t.engine.registry.get, inputs)
    assert result.status is S.FAILED
    assert result.error == PRODUCT_NOT_FINITE
    assert result.outputs == {}


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, [1, {"deep": math.nan}]])
def test_a_graph_input_that_is_not_finite_is_refused_naming_it(t: TestEngine, value: Any) -> None:
    graph_id = t.save_graph(MULTIPLY)
    with pytest.raises(InputValidationError) as refused:
        t.submit(graph_id, {"a": value, "b": 2})
    assert str(refused.value) == f"graph input 'a' is not a JSON value: {NOT_FINITE}"
    assert api.list_executions(DEFAULT_USER, engine=t.engine) == []


def test_a_node_input_mask_that_is_not_finite_is_refused_naming_it(t: TestEngine) -> None:
    graph_id = t.save_graph(MULTIPLY)
    masks = {"calc": {"b": math.inf}}
    with pytest.raises(InputValidationError) as refused:
        t.submit(graph_id, {"a": 1, "b": 2}, nodes_input_masks=masks)
    assert str(refused.value) == f"nodes_input_masks['calc']['b'] is not a JSON value: {NOT_FINITE}"


def test_an_engine_error_recording_a_nodes_end_fails_the_node(
    t: TestEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value the database refuses (as PostgreSQL refused Infinity) or any bug while recording:
    the node and its run end FAILED, never stay RUNNING."""
    record = inline.record

    def refusing(engine: Any, ref: inline.NodeAttempt, outputs: Any, *args: Any) -> Any:
        if ref.node_id == "calc" and any(o.name == "result" for o in outputs):
            raise RuntimeError("the database refused the value")
        return record(engine, ref, outputs, *args)

    monkeypatch.setattr(inline, "record", refusing)
    view = t.run(t.save_graph(MULTIPLY), {"a": 2, "b": 3})
    calc = node_named(view, "calc")
    expected = (
        "the engine could not record the node's run: RuntimeError: the database refused the value"
    )
    assert (calc.status, calc.error) == (S.FAILED, expected)
    assert calc.stats["unexpected_error"] == "RuntimeError"
    assert view.status is S.FAILED
