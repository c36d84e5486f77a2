"""Inputs that cannot feed their pins: refused at submission when they come from the caller,
failing the node (on its error pin) when they come from upstream; graphs where a node can
never run are refused or warned about."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from autoexec import api
from autoexec.engine.admission import admit
from autoexec.engine.node_execution import execute_node
from autoexec.engine.orchestrator import advance
from autoexec.errors import GraphValidationError, GraphWarning, InputValidationError
from autoexec.statuses import ExecutionStatus
from autoexec.testing import TestEngine
from tests.graphs import graph, node

S = ExecutionStatus
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CALC_A_INVALID = (
    "invalid input for node 'calc' (calculator): "
    "a: Input should be a valid number, unable to parse string as a number"
)


def test_graph_input_that_cannot_feed_its_pin_is_refused_and_nothing_is_written(
    t: TestEngine,
) -> None:
    graph_id = t.save_graph(json.loads((EXAMPLES / "hello.json").read_text()))
    with pytest.raises(InputValidationError) as refused:
        t.submit(graph_id, {"x": "abc"})
    assert str(refused.value) == (
        "graph input 'x' = 'abc' cannot feed pin 'a' of node 'add' (calculator): "
        "Input should be a valid number, unable to parse string as a number"
    )
    assert api.list_executions("test-user", engine=t.engine) == []
    assert t.dispatcher.sent == []


def text_into_calculator(*, handled: bool) -> dict[str, Any]:
    """x -> "n={x}" -> calculator.a: the text can never be a number."""
    nodes = [
        node("x", "agent_input", name="x"),
        node("text", "fill_text_template", format="n={x}"),
        node("calc", "calculator", operation="add", b=1),
        node("sum", "agent_output", name="sum"),
    ]
    links = [
        ("x", "result", "text", "values_#_x"),
        ("text", "output", "calc", "a"),
        ("calc", "result", "sum", "value"),
    ]
    if handled:
        nodes.append(node("problem", "agent_output", name="problem"))
        links.append(("calc", "error", "problem", "value"))
    return graph(nodes, links)


def test_upstream_value_invalid_for_a_pin_fails_that_node_and_the_graph(t: TestEngine) -> None:
    view = t.run(t.save_graph(text_into_calculator(handled=False)), {"x": 3})
    assert view.status is S.FAILED
    assert view.error == CALC_A_INVALID
    (calc,) = [n for n in view.node_executions if n.node_id == "calc"]
    assert calc.status is S.FAILED
    assert calc.error == CALC_A_INVALID
    assert calc.outputs == {"error": [CALC_A_INVALID]}
    assert calc.inputs == {"operation": "add", "b": 1, "a": "n=3"}
    assert calc.stats["error"] == CALC_A_INVALID
    assert view.stats["node_error_count"] == 1
    assert view.stats["error"] == CALC_A_INVALID
    assert view.outputs == {}
    assert [n.node_id for n in view.node_executions if n.node_id == "sum"] == []


def test_invalid_value_handled_by_a_link_from_the_error_pin_completes_the_graph(
    t: TestEngine,
) -> None:
    view = t.run(t.save_graph(text_into_calculator(handled=True)), {"x": 3})
    assert view.status is S.COMPLETED
    assert view.error is None
    assert view.outputs == {"problem": [CALC_A_INVALID]}
    (calc,) = [n for n in view.node_executions if n.node_id == "calc"]
    assert calc.status is S.FAILED
    assert view.stats["node_error_count"] == 1


def test_error_recorded_by_the_last_delivery_is_delivered_without_another_wake_up(
    t: TestEngine,
) -> None:
    """Every node finishes before the one orchestrator step their wake-ups coalesce into;
    that step fails ``calc`` and records its error, which nobody else will wake it for."""
    engine, steps = t.engine, t.dispatcher
    exec_id = t.submit(t.save_graph(text_into_calculator(handled=True)), {"x": 3})
    steps.queued.clear()
    assert admit(engine, exec_id)

    advance(engine, exec_id)
    while nodes := steps.take_nodes():
        for node_exec_id in nodes:
            execute_node(engine, node_exec_id)
        advance(engine, exec_id)

    view = t.execution(exec_id)
    assert view.status is S.COMPLETED
    assert view.outputs == {"problem": [CALC_A_INVALID]}


def test_a_constant_its_pin_refuses_is_refused_at_save(t: TestEngine) -> None:
    definition = graph([node("calc", "calculator", operation="add", a="abc", b=1)], [])
    with pytest.raises(GraphValidationError) as refused:
        t.save_graph(definition)
    assert "node 'calc' (calculator) input 'a': constant \"abc\" is invalid" in str(refused.value)


def test_starting_node_with_an_invalid_masked_input_fails_and_its_error_is_delivered(
    t: TestEngine,
) -> None:
    definition = graph(
        [
            node("calc", "calculator", operation="add", a=1, b=1),
            node("problem", "agent_output", name="problem"),
        ],
        [("calc", "error", "problem", "value")],
    )
    view = t.run(t.save_graph(definition), nodes_input_masks={"calc": {"a": "abc"}})
    assert view.status is S.COMPLETED
    assert view.outputs == {"problem": [CALC_A_INVALID]}
    assert [n.status for n in view.node_executions if n.node_id == "calc"] == [S.FAILED]


def closed_cycle_nodes() -> tuple[list[dict[str, Any]], list[tuple[str, str, str, str]]]:
    nodes = [
        node("ping", "calculator", operation="add", b=1),
        node("pong", "calculator", operation="add", b=1),
    ]
    return nodes, [("ping", "result", "pong", "a"), ("pong", "result", "ping", "a")]


def test_save_graph_refuses_a_graph_where_no_node_can_start(t: TestEngine) -> None:
    nodes, links = closed_cycle_nodes()
    with pytest.raises(GraphValidationError, match="no node can start") as refused:
        t.save_graph(graph(nodes, links))
    assert "('ping', 'pong')" in str(refused.value)


def test_save_graph_warns_about_nodes_no_start_reaches(
    t: TestEngine, caplog: pytest.LogCaptureFixture
) -> None:
    nodes, links = closed_cycle_nodes()
    definition = graph(
        [node("x", "agent_input", name="x"), node("out", "agent_output", name="x"), *nodes],
        [("x", "result", "out", "value"), *links],
    )
    expected = (
        f"graph {definition['name']!r}: node(s) 'ping', 'pong' can never run: no starting node "
        "(an 'agent_input' node or a node with no incoming link) reaches them through links"
    )
    with (
        caplog.at_level(logging.WARNING, logger="autoexec.graph"),
        pytest.warns(GraphWarning) as warned,
    ):
        graph_id, version = api.save_graph(definition, "test-user", engine=t.engine)
    assert [str(w.message) for w in warned] == [expected]
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("autoexec.graph", logging.WARNING, expected)
    ]
    assert version == 1 and graph_id
