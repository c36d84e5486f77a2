"""The dataflow rules of SPEC §3, run by the reference interpreter over real built-in blocks.

Every test builds a small graph, runs it with ``run_reference`` (or drives ``dataflow`` by hand
over a ``MemoryStore``) and checks statuses, inputs and outputs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from autoexec.blocks.base import Block, BlockInput, BlockOutput, RunContext
from autoexec.blocks.builtin import CalculatorBlock, CreateListBlock
from autoexec.blocks.registry import load_registry
from autoexec.dataflow import (
    RunSpec,
    check_ready,
    deliver,
    is_static,
    start,
    validate_inputs,
)
from autoexec.graph import Graph
from autoexec.reference import MemoryStore, NodeRecord, ReferenceResult, run_reference
from autoexec.statuses import ExecutionStatus

S = ExecutionStatus
REGISTRY = load_registry()


# --- test-only blocks ------------------------------------------------------------------------


class AnyInput(BlockInput):
    x: Any


class RaiseValueErrorOutput(BlockOutput):
    result: Any = None


class RaiseValueErrorBlock(Block[AnyInput]):
    id = "test_raise_value_error"
    name = "Raise ValueError"
    Input = AnyInput
    Output = RaiseValueErrorOutput

    def run(self, data: AnyInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        raise ValueError(f"bad value {data.x}")
        yield "result", data.x  # pragma: no cover - makes run a generator


class RaiseRuntimeErrorBlock(Block[AnyInput]):
    id = "test_raise_runtime_error"
    name = "Raise RuntimeError"
    Input = AnyInput
    Output = RaiseValueErrorOutput

    def run(self, data: AnyInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        raise RuntimeError("kaboom")
        yield "result", data.x  # pragma: no cover - makes run a generator


@dataclass
class Point:
    x: float
    y: float


class PointOutput(BlockOutput):
    point: Any


class MakePointBlock(Block[AnyInput]):
    """Yields an object (not a dict), so that ``point_@_attr`` links pick an attribute."""

    id = "test_make_point"
    name = "Make point"
    Input = AnyInput
    Output = PointOutput

    def run(self, data: AnyInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        yield "point", Point(x=data.x, y=data.x * 10)


TEST_BLOCKS: dict[str, type[Block[Any]]] = {
    block.id: block for block in (RaiseValueErrorBlock, RaiseRuntimeErrorBlock, MakePointBlock)
}


def lookup(block_id: str) -> type[Block[Any]]:
    if block_id in TEST_BLOCKS:
        return TEST_BLOCKS[block_id]
    return REGISTRY.get(block_id)


# --- helpers ---------------------------------------------------------------------------------


def node(node_id: str, block_id: str, **input_default: Any) -> dict[str, Any]:
    return {"id": node_id, "block_id": block_id, "input_default": input_default}


def link(
    source_id: str, source_name: str, sink_id: str, sink_name: str, static: bool = False
) -> dict[str, Any]:
    return {
        "source_id": source_id,
        "source_name": source_name,
        "sink_id": sink_id,
        "sink_name": sink_name,
        "is_static": static,
    }


def make_graph(nodes: list[dict[str, Any]], links: list[dict[str, Any]]) -> Graph:
    return Graph.model_validate(
        {"id": "g", "version": 1, "user_id": "u", "name": "test", "nodes": nodes, "links": links}
    )


def run(graph: Graph, **kwargs: Any) -> ReferenceResult:
    return run_reference(graph, blocks=lookup, **kwargs)


def execs(result: ReferenceResult, node_id: str) -> list[NodeRecord]:
    return [e for e in result.node_executions if e.node_id == node_id]


def output_values(record: NodeRecord, pin: str) -> list[Any]:
    return [value for name, value in record.outputs if name == pin]


def results_of(result: ReferenceResult, node_id: str, pin: str = "result") -> list[Any]:
    return [v for e in execs(result, node_id) for v in output_values(e, pin)]


# --- §1: the example graph -------------------------------------------------------------------


def spec_example() -> Graph:
    return make_graph(
        [
            node("a", "agent_input", name="x"),
            node("calc", "calculator", operation="add", b=1),
            node("out", "agent_output", name="sum"),
        ],
        [link("a", "result", "calc", "a"), link("calc", "result", "out", "value")],
    )


def test_spec_example_graph_adds_one() -> None:
    result = run(spec_example(), inputs={"x": 1})

    assert result.status is S.COMPLETED
    assert result.error is None
    assert result.outputs == {"sum": [2.0]}
    assert result.outputs == {"sum": [2]}
    assert all(e.status is S.COMPLETED for e in result.node_executions)
    assert [e.node_id for e in result.node_executions] == ["a", "calc", "out"]
    (calc,) = execs(result, "calc")
    assert calc.inputs == {"operation": "add", "a": 1.0, "b": 1.0}
    assert calc.outputs == [("result", 2.0)]


def test_graph_input_reaches_agent_input_as_value() -> None:
    result = run(spec_example(), inputs={"x": 41})
    (a,) = execs(result, "a")
    assert a.inputs is not None and a.inputs["value"] == 41
    assert result.outputs == {"sum": [42.0]}


# --- §3.2: dynamic pins ----------------------------------------------------------------------


def test_dict_output_part_travels_on_dict_pin() -> None:
    graph = make_graph(
        [
            node("d", "create_dict", values={"k": 5, "j": 7}),
            node("calc", "calculator", operation="add", b=1),
            node("absent", "calculator", operation="add", b=1),
            node("out", "agent_output", name="sum"),
        ],
        [
            link("d", "dictionary_#_k", "calc", "a"),
            link("d", "dictionary_#_nope", "absent", "a"),
            link("calc", "result", "out", "value"),
        ],
    )
    result = run(graph)

    assert result.status is S.COMPLETED
    assert result.outputs == {"sum": [6.0]}
    (calc,) = execs(result, "calc")
    assert calc.inputs is not None and calc.inputs["a"] == 5.0
    # a part that does not exist does not travel, and is no error
    assert execs(result, "absent") == []


def test_list_output_part_travels_on_list_pin() -> None:
    graph = make_graph(
        [
            node("l", "create_list", values=[10, 20, 30]),
            node("calc", "calculator", operation="multiply", b=2),
            node("absent", "print"),
            node("out", "agent_output", name="doubled"),
        ],
        [
            link("l", "list_$_1", "calc", "a"),
            link("l", "list_$_7", "absent", "text"),
            link("calc", "result", "out", "value"),
        ],
    )
    result = run(graph)

    assert result.status is S.COMPLETED
    assert result.outputs == {"doubled": [40.0]}
    assert execs(result, "absent") == []


def test_object_attribute_travels_on_object_pin() -> None:
    graph = make_graph(
        [
            node("p", "test_make_point", x=3),
            node("calc", "calculator", operation="add", b=0.5),
            node("out", "agent_output", name="y"),
        ],
        [link("p", "point_@_y", "calc", "a"), link("calc", "result", "out", "value")],
    )
    result = run(graph)

    assert result.status is S.COMPLETED
    assert result.outputs == {"y": [30.5]}


def test_list_sink_pins_build_a_list_with_gap_filled() -> None:
    graph = make_graph(
        [
            node("first", "agent_input", name="first"),
            node("third", "agent_input", name="third"),
            node("mk", "create_list"),
            node("out", "agent_output", name="list"),
        ],
        [
            link("first", "result", "mk", "values_$_0"),
            link("third", "result", "mk", "values_$_2"),
            link("mk", "list", "out", "value"),
        ],
    )
    result = run(graph, inputs={"first": "A", "third": "C"})

    assert result.status is S.COMPLETED
    assert result.outputs == {"list": [["A", "", "C"]]}
    (mk,) = execs(result, "mk")
    assert mk.status is S.COMPLETED
    assert mk.inputs == {"values": ["A", "", "C"]}


def test_dict_sink_pins_build_a_dict_for_a_template() -> None:
    graph = make_graph(
        [
            node("who", "agent_input", name="who"),
            node("greet", "agent_input", name="greet"),
            node("fill", "fill_text_template", format="{greet}, {who}!"),
            node("out", "agent_output", name="text"),
        ],
        [
            link("who", "result", "fill", "values_#_who"),
            link("greet", "result", "fill", "values_#_greet"),
            link("fill", "output", "out", "value"),
        ],
    )
    result = run(graph, inputs={"who": "world", "greet": "Hello"})

    assert result.status is S.COMPLETED
    assert result.outputs == {"text": ["Hello, world!"]}


def test_dynamic_pins_both_ways_dict_into_list() -> None:
    graph = make_graph(
        [
            node("d", "create_dict", values={"a": "x", "b": "y"}),
            node("mk", "create_list"),
            node("out", "agent_output", name="list"),
        ],
        [
            link("d", "dictionary_#_b", "mk", "values_$_0"),
            link("d", "dictionary_#_a", "mk", "values_$_1"),
            link("mk", "list", "out", "value"),
        ],
    )
    result = run(graph)

    assert result.outputs == {"list": [["y", "x"]]}
    assert len(execs(result, "mk")) == 1


# --- §3.2: delivery --------------------------------------------------------------------------


def test_two_values_on_the_same_pin_make_two_executions() -> None:
    graph = make_graph(
        [
            node("items", "step_through_items", items=[1, 2]),
            node("calc", "calculator", operation="add", b=10),
            node("out", "agent_output", name="sum"),
        ],
        [link("items", "item", "calc", "a"), link("calc", "result", "out", "value")],
    )
    result = run(graph)

    assert result.status is S.COMPLETED
    calcs = execs(result, "calc")
    assert [e.status for e in calcs] == [S.COMPLETED, S.COMPLETED]
    assert [e.inputs["a"] for e in calcs if e.inputs] == [1.0, 2.0]
    assert result.outputs == {"sum": [11.0, 12.0]}


def test_values_from_two_sources_pair_by_arrival() -> None:
    graph = make_graph(
        [
            node("left", "step_through_items", items=[1, 2, 3]),
            node("right", "step_through_items", items=[10, 20, 30]),
            node("calc", "calculator", operation="multiply"),
            node("out", "agent_output", name="product"),
        ],
        [
            link("left", "item", "calc", "a"),
            link("right", "item", "calc", "b"),
            link("calc", "result", "out", "value"),
        ],
    )
    result = run(graph)

    assert result.status is S.COMPLETED
    calcs = execs(result, "calc")
    assert len(calcs) == 3
    assert [(e.inputs["a"], e.inputs["b"]) for e in calcs if e.inputs] == [
        (1.0, 10.0),
        (2.0, 20.0),
        (3.0, 30.0),
    ]
    assert result.outputs == {"product": [10.0, 40.0, 90.0]}


def two_source_graph() -> Graph:
    return make_graph(
        [
            node("left", "agent_input", name="left"),
            node("right", "agent_input", name="right"),
            node("calc", "calculator", operation="subtract"),
        ],
        [link("left", "result", "calc", "a"), link("right", "result", "calc", "b")],
    )


def test_delivery_fills_the_earliest_incomplete_execution_lacking_the_pin() -> None:
    spec = RunSpec(two_source_graph(), lookup)
    store = MemoryStore()

    assert deliver(spec, store, "left", "result", 1) == []
    assert deliver(spec, store, "left", "result", 2) == []
    assert deliver(spec, store, "left", "result", 3) == []
    assert len(store.executions) == 3
    assert all(e.status is S.INCOMPLETE for e in store.executions.values())

    ready_first = deliver(spec, store, "right", "result", 100)
    ready_second = deliver(spec, store, "right", "result", 200)

    assert ready_first == [1]
    assert ready_second == [2]
    assert store.executions[1].status is S.QUEUED
    assert store.executions[1].inputs == {"operation": "subtract", "a": 1.0, "b": 100.0}
    assert store.executions[2].inputs == {"operation": "subtract", "a": 2.0, "b": 200.0}
    assert store.executions[3].status is S.INCOMPLETE
    assert store.executions[3].delivered == {"a": 3}
    assert len(store.executions) == 3, "no new execution while one lacks the pin"


def test_delivery_creates_a_new_execution_when_none_lacks_the_pin() -> None:
    spec = RunSpec(two_source_graph(), lookup)
    store = MemoryStore()

    deliver(spec, store, "right", "result", 5)
    deliver(spec, store, "right", "result", 6)

    assert [e.delivered for e in store.executions.values()] == [{"b": 5}, {"b": 6}]
    assert all(e.node_id == "calc" for e in store.executions.values())


def test_an_output_with_no_matching_link_goes_nowhere() -> None:
    spec = RunSpec(two_source_graph(), lookup)
    store = MemoryStore()

    assert deliver(spec, store, "left", "other_pin", 1) == []
    assert store.executions == {}


# --- §3.4: static links ----------------------------------------------------------------------


def backfill_graph(static_link: bool, source_block: str) -> Graph:
    nodes = [
        node("items", "step_through_items", items=[1, 2, 3]),
        node("k", "agent_input", name="k"),
        node("calc", "calculator", operation="add"),
        node("out", "agent_output", name="sum"),
    ]
    links = [
        link("items", "item", "calc", "a"),
        link("calc", "result", "out", "value"),
    ]
    if source_block == "store_value":
        nodes.append(node("sv", "store_value"))
        links += [
            link("k", "result", "sv", "input"),
            link("sv", "output", "calc", "b", static=static_link),
        ]
    else:
        # one extra hop so that b arrives after the three values of a
        nodes.append(node("hop", "print"))
        links += [
            link("k", "result", "hop", "text"),
            link("hop", "output", "calc", "b", static=static_link),
        ]
    return make_graph(nodes, links)


@pytest.mark.parametrize(
    ("static_link", "source_block"),
    [(True, "print"), (True, "store_value"), (False, "store_value")],
    ids=["static-link", "static-link-from-store-value", "static-output-block"],
)
def test_static_value_backfills_every_waiting_execution(
    static_link: bool, source_block: str
) -> None:
    result = run(backfill_graph(static_link, source_block), inputs={"k": 100})

    assert result.status is S.COMPLETED
    calcs = execs(result, "calc")
    assert [e.status for e in calcs] == [S.COMPLETED] * 3
    assert sorted(v for e in calcs for v in output_values(e, "result")) == [101.0, 102.0, 103.0]
    assert sorted(result.outputs["sum"]) == [101.0, 102.0, 103.0]


def test_without_a_static_link_only_one_waiting_execution_gets_the_value() -> None:
    result = run(backfill_graph(False, "print"), inputs={"k": 100})

    assert result.status is S.COMPLETED
    calcs = execs(result, "calc")
    assert [e.status for e in calcs] == [S.COMPLETED, S.INCOMPLETE, S.INCOMPLETE]
    assert result.outputs == {"sum": [101.0]}


def test_static_backfill_makes_several_executions_ready_at_once() -> None:
    graph = make_graph(
        [
            node("items", "step_through_items", items=[1, 2, 3]),
            node("sv", "store_value"),
            node("calc", "calculator", operation="multiply"),
        ],
        [link("items", "item", "calc", "a"), link("sv", "output", "calc", "b")],
    )
    spec = RunSpec(graph, lookup)
    store = MemoryStore()
    for value in (1, 2, 3):
        assert deliver(spec, store, "items", "item", value) == []

    ready = deliver(spec, store, "sv", "output", 7)

    assert sorted(ready) == [1, 2, 3]
    assert [store.executions[e].inputs for e in sorted(ready)] == [
        {"operation": "multiply", "a": float(a), "b": 7.0} for a in (1, 2, 3)
    ]
    assert is_static(spec, graph.links[1])
    assert not is_static(spec, graph.links[0])


def test_static_value_is_reused_by_later_executions() -> None:
    graph = make_graph(
        [
            # k runs first (starting nodes run in node order): b arrives before any a
            node("k", "agent_input", name="k"),
            node("items", "step_through_items", items=[1, 2, 3]),
            node("calc", "calculator", operation="add"),
            node("out", "agent_output", name="sum"),
        ],
        [
            link("k", "result", "calc", "b", static=True),
            link("items", "item", "calc", "a"),
            link("calc", "result", "out", "value"),
        ],
    )
    spec = RunSpec(graph, lookup)
    store = MemoryStore()
    assert deliver(spec, store, "k", "result", 100) == []
    ready = [e for v in (1, 2, 3) for e in deliver(spec, store, "items", "item", v)]

    assert len(ready) == 3
    assert [store.executions[e].inputs for e in ready] == [
        {"operation": "add", "a": float(a), "b": 100.0} for a in (1, 2, 3)
    ]
    # only the first execution got b delivered; the later ones reuse the sticky value
    assert [e.delivered for e in store.executions.values()] == [
        {"b": 100, "a": 1},
        {"a": 2},
        {"a": 3},
    ]

    result = run(graph, inputs={"k": 100})
    assert result.status is S.COMPLETED
    assert sorted(result.outputs["sum"]) == [101.0, 102.0, 103.0]
    assert [e.status for e in execs(result, "calc")] == [S.COMPLETED] * 3


def test_store_value_block_declares_static_output() -> None:
    graph = make_graph(
        [node("sv", "store_value"), node("p", "print")],
        [link("sv", "output", "p", "text")],
    )
    spec = RunSpec(graph, lookup)
    assert lookup("store_value").static_output is True
    assert is_static(spec, graph.links[0])


# --- §3.5: masks and skips -------------------------------------------------------------------


def masked_graph(**calc_defaults: Any) -> Graph:
    """x -> calc.a, y -> calc.b, calc -> out "sum"."""
    return make_graph(
        [
            node("x", "agent_input", name="x"),
            node("y", "agent_input", name="y"),
            node("calc", "calculator", operation="add", **calc_defaults),
            node("out", "agent_output", name="sum"),
        ],
        [
            link("x", "result", "calc", "a"),
            link("y", "result", "calc", "b"),
            link("calc", "result", "out", "value"),
        ],
    )


def test_mask_overrides_a_linked_pin() -> None:
    result = run(masked_graph(), inputs={"x": 1, "y": 5}, nodes_input_masks={"calc": {"b": 10}})

    assert result.status is S.COMPLETED
    assert result.outputs == {"sum": [11.0]}
    completed = [e for e in execs(result, "calc") if e.status is S.COMPLETED]
    assert len(completed) == 1
    assert completed[0].inputs is not None and completed[0].inputs["b"] == 10.0


def test_mask_overrides_input_default() -> None:
    result = run(spec_example(), inputs={"x": 1}, nodes_input_masks={"calc": {"b": 41}})

    assert result.outputs == {"sum": [42.0]}


def test_mask_applies_to_every_execution_of_the_node() -> None:
    graph = make_graph(
        [
            node("items", "step_through_items", items=[1, 2]),
            node("calc", "calculator", operation="add", b=0),
            node("out", "agent_output", name="sum"),
        ],
        [link("items", "item", "calc", "a"), link("calc", "result", "out", "value")],
    )
    result = run(graph, nodes_input_masks={"calc": {"b": 100, "operation": "subtract"}})

    assert result.outputs == {"sum": [-99.0, -98.0]}


def test_skipped_node_is_completed_without_outputs_and_downstream_never_runs() -> None:
    result = run(spec_example(), inputs={"x": 1}, nodes_to_skip=["calc"])

    assert result.status is S.COMPLETED
    assert result.error is None
    (calc,) = execs(result, "calc")
    assert calc.status is S.COMPLETED
    assert calc.outputs == []
    assert execs(result, "out") == []
    assert result.outputs == {}


def test_skipped_starting_node() -> None:
    result = run(spec_example(), inputs={"x": 1}, nodes_to_skip=["a"])

    assert result.status is S.COMPLETED
    (a,) = execs(result, "a")
    assert a.status is S.COMPLETED
    assert a.outputs == []
    assert execs(result, "calc") == []
    assert result.outputs == {}


# --- §3.6: errors ----------------------------------------------------------------------------


def division_graph(handle_error: bool) -> Graph:
    nodes = [
        node("x", "agent_input", name="x"),
        node("calc", "calculator", operation="divide", b=0),
        node("out", "agent_output", name="quotient"),
    ]
    links = [link("x", "result", "calc", "a"), link("calc", "result", "out", "value")]
    if handle_error:
        nodes.append(node("handler", "agent_output", name="problem"))
        links.append(link("calc", "error", "handler", "value"))
    return make_graph(nodes, links)


def test_linked_error_pin_is_handled_and_graph_completes() -> None:
    result = run(division_graph(handle_error=True), inputs={"x": 1})

    assert result.status is S.COMPLETED
    assert result.error is None
    (calc,) = execs(result, "calc")
    assert calc.status is S.FAILED
    assert calc.error is not None and "division by zero" in calc.error
    assert calc.outputs == [("error", calc.error)]
    assert result.outputs == {"problem": [calc.error]}
    assert execs(result, "out") == []


def test_unlinked_error_pin_fails_the_graph() -> None:
    result = run(division_graph(handle_error=False), inputs={"x": 1})

    assert result.status is S.FAILED
    assert result.error is not None and "division by zero" in result.error
    (calc,) = execs(result, "calc")
    assert calc.status is S.FAILED
    assert calc.error == result.error
    assert result.outputs == {}


def test_value_error_message_is_the_error_output() -> None:
    graph = make_graph([node("bad", "test_raise_value_error", x=3)], [])
    result = run(graph)

    assert result.status is S.FAILED
    (bad,) = execs(result, "bad")
    assert bad.status is S.FAILED
    assert bad.error == "bad value 3"
    assert bad.outputs == [("error", "bad value 3")]
    assert result.error == "bad value 3"


def test_other_exception_message_is_in_the_error_output() -> None:
    graph = make_graph(
        [node("bad", "test_raise_runtime_error", x=1), node("out", "agent_output", name="err")],
        [link("bad", "error", "out", "value")],
    )
    result = run(graph)

    assert result.status is S.COMPLETED
    (bad,) = execs(result, "bad")
    assert bad.status is S.FAILED
    assert bad.error is not None and "kaboom" in bad.error
    assert result.outputs == {"err": [bad.error]}


CALC_A_INVALID = (
    "invalid input for node 'calc' (calculator): "
    "a: Input should be a valid number, unable to parse string as a number"
)


def test_complete_but_invalid_inputs_fail_the_node_and_the_graph() -> None:
    # Submission refuses this value as a graph input; a mask (or an upstream node) gives it.
    result = run(spec_example(), nodes_input_masks={"a": {"value": "not a number"}})

    assert result.status is S.FAILED
    assert result.error == CALC_A_INVALID
    (calc,) = execs(result, "calc")
    assert calc.status is S.FAILED
    assert calc.error == CALC_A_INVALID
    assert calc.outputs == [("error", CALC_A_INVALID)]
    assert calc.inputs == {"operation": "add", "b": 1, "a": "not a number"}
    assert execs(result, "out") == []


def test_invalid_inputs_fail_at_once_and_queue_the_error_for_delivery() -> None:
    spec = RunSpec(spec_example(), lookup)
    store = MemoryStore()

    assert deliver(spec, store, "a", "result", "not a number") == []

    (execution,) = store.executions.values()
    assert execution.status is S.FAILED
    assert execution.error == CALC_A_INVALID
    assert list(store.undelivered) == [execution]


def test_error_of_invalid_inputs_goes_out_on_the_error_pin() -> None:
    graph = make_graph(
        [
            node("a", "agent_input", name="x", value="not a number"),
            node("calc", "calculator", operation="add", b=1),
            node("problem", "agent_output", name="problem"),
        ],
        [link("a", "result", "calc", "a"), link("calc", "error", "problem", "value")],
    )
    result = run(graph)

    assert result.status is S.COMPLETED
    assert result.error is None
    assert result.outputs == {"problem": [CALC_A_INVALID]}
    (calc,) = execs(result, "calc")
    assert calc.status is S.FAILED


def test_starting_node_with_an_invalid_default_fails() -> None:
    graph = make_graph(
        [
            node("calc", "calculator", operation="add", a="abc", b=1),
            node("out", "agent_output", name="sum"),
        ],
        [link("calc", "result", "out", "value")],
    )
    result = run(graph)

    assert result.status is S.FAILED
    assert result.error == CALC_A_INVALID
    (calc,) = execs(result, "calc")
    assert (calc.status, calc.outputs) == (S.FAILED, [("error", CALC_A_INVALID)])


def test_skipped_node_with_invalid_inputs_is_skipped_not_failed() -> None:
    result = run(spec_example(), nodes_input_masks={"a": {"value": "abc"}}, nodes_to_skip=["calc"])

    assert result.status is S.COMPLETED
    (calc,) = execs(result, "calc")
    assert (calc.status, calc.outputs) == (S.COMPLETED, [])


def test_missing_required_input_keeps_waiting_even_beside_an_invalid_one() -> None:
    # b is required, unlinked and absent: the execution may never run, but it does not fail.
    graph = make_graph(
        [node("a", "agent_input", name="x"), node("calc", "calculator", operation="add")],
        [link("a", "result", "calc", "a")],
    )
    spec = RunSpec(graph, lookup)
    store = MemoryStore()

    deliver(spec, store, "a", "result", "abc")

    (execution,) = store.executions.values()
    assert execution.status is S.INCOMPLETE
    assert "missing required input(s) b" in execution.not_ready_reason
    assert not store.undelivered


def test_incomplete_execution_left_at_the_end_is_not_an_error() -> None:
    # y has no value and no default, so it yields nothing and calc never gets b.
    result = run(masked_graph(), inputs={"x": 1})

    assert result.status is S.COMPLETED
    assert result.error is None
    (calc,) = execs(result, "calc")
    assert calc.status is S.INCOMPLETE
    assert result.outputs == {}
    (y,) = execs(result, "y")
    assert y.status is S.COMPLETED and y.outputs == []


# --- loops -----------------------------------------------------------------------------------


def counter_loop() -> Graph:
    """count = start; while count < limit: count += 1; then report count."""
    return make_graph(
        [
            node("start", "agent_input", name="start", default=0),
            node("limit", "agent_input", name="limit", default=3),
            node("lim", "store_value"),
            node("cond", "condition", operator="<"),
            node("inc", "calculator", operation="add", b=1),
            node("steps", "agent_output", name="steps"),
            node("final", "agent_output", name="final"),
        ],
        [
            link("start", "result", "cond", "value1"),
            link("limit", "result", "lim", "input"),
            link("lim", "output", "cond", "value2", static=True),
            link("cond", "yes_output", "inc", "a"),
            link("inc", "result", "cond", "value1"),
            link("inc", "result", "steps", "value"),
            link("cond", "no_output", "final", "value"),
        ],
    )


def test_loop_with_condition_and_static_link_terminates() -> None:
    result = run(counter_loop(), max_node_runs=200)

    assert result.status is S.COMPLETED
    assert result.outputs == {"steps": [1.0, 2.0, 3.0], "final": [3.0]}
    conds = execs(result, "cond")
    assert [e.status for e in conds] == [S.COMPLETED] * 4
    assert [output_values(e, "result") for e in conds] == [[True], [True], [True], [False]]
    assert [e.status for e in execs(result, "inc")] == [S.COMPLETED] * 3
    assert len(execs(result, "lim")) == 1, "the limit is computed once and reused"


def test_loop_uses_graph_inputs() -> None:
    result = run(counter_loop(), inputs={"start": 5, "limit": 8}, max_node_runs=200)

    assert result.status is S.COMPLETED
    assert result.outputs == {"steps": [6.0, 7.0, 8.0], "final": [8.0]}


def test_loop_that_does_not_iterate() -> None:
    result = run(counter_loop(), inputs={"start": 10}, max_node_runs=200)

    assert result.outputs == {"final": [10]}
    assert execs(result, "inc") == []


# --- §3.7: graph outputs ---------------------------------------------------------------------


def test_graph_outputs_are_collected_by_name_in_order() -> None:
    graph = make_graph(
        [
            node("items", "step_through_items", items=["a", "b", "c"]),
            node("each", "agent_output", name="each"),
            node("x", "agent_input", name="x"),
            node("echo", "agent_output", name="echo", format="x={value}"),
        ],
        [link("items", "item", "each", "value"), link("x", "result", "echo", "value")],
    )
    result = run(graph, inputs={"x": 7})

    assert result.status is S.COMPLETED
    assert result.outputs == {"each": ["a", "b", "c"], "echo": ["x=7"]}
    assert [e.status for e in execs(result, "each")] == [S.COMPLETED] * 3


def test_step_through_dict_yields_keys_and_items_in_order() -> None:
    graph = make_graph(
        [
            node("items", "step_through_items", items={"one": 1, "two": 2}),
            node("keys", "agent_output", name="keys"),
            node("values", "agent_output", name="values"),
        ],
        [link("items", "key", "keys", "value"), link("items", "item", "values", "value")],
    )
    result = run(graph)

    assert result.outputs == {"keys": ["one", "two"], "values": [1, 2]}


# --- start (§3.1) ----------------------------------------------------------------------------


def test_start_creates_one_execution_per_starting_node() -> None:
    graph = make_graph(
        [
            node("x", "agent_input", name="x"),
            node("free", "calculator", operation="add", a=1, b=2),
            node("calc", "calculator", operation="add", b=1),
            node("wants", "calculator", operation="add", a=1),
        ],
        [link("x", "result", "calc", "a")],
    )
    spec = RunSpec(graph, lookup, inputs={"x": 5})
    store = MemoryStore()

    ready = start(spec, store)

    by_node = {e.node_id: e for e in store.executions.values()}
    assert set(by_node) == {"x", "free", "wants"}
    assert sorted(by_node[n].id for n in ("x", "free")) == sorted(ready)
    assert by_node["x"].inputs == {"name": "x", "value": 5}
    assert by_node["wants"].status is S.INCOMPLETE
    assert "b" in by_node["wants"].not_ready_reason


# --- check_ready / validate_inputs -----------------------------------------------------------


def test_validate_inputs_coerces_to_declared_types() -> None:
    readiness = validate_inputs(CalculatorBlock, {"operation": "add", "a": "2", "b": 3})

    assert readiness.ready
    assert readiness.inputs == {"operation": "add", "a": 2.0, "b": 3.0}
    assert isinstance(readiness.inputs["a"], float)


def test_validate_inputs_missing_required_names_the_pin() -> None:
    readiness = validate_inputs(CalculatorBlock, {"operation": "add", "a": 1})

    assert not readiness.ready
    assert "b" in readiness.reason
    assert "missing" in readiness.reason


def test_validate_inputs_invalid_value_names_the_pin() -> None:
    readiness = validate_inputs(CalculatorBlock, {"operation": "add", "a": "two", "b": 1})

    assert not readiness.ready
    assert "a" in readiness.reason
    assert "invalid" in readiness.reason


def test_validate_inputs_merges_dynamic_pins() -> None:
    readiness = validate_inputs(CreateListBlock, {"values_$_0": 1, "values_$_2": 3})

    assert readiness.ready
    assert readiness.inputs == {"values": [1, "", 3]}


def test_check_ready_coerces_a_delivered_value() -> None:
    graph = spec_example()
    readiness = check_ready(RunSpec(graph, lookup), graph.node("calc"), {"a": "2"}, {})

    assert readiness.ready
    assert readiness.inputs == {"operation": "add", "a": 2.0, "b": 1.0}


def test_check_ready_missing_linked_pin_names_it() -> None:
    graph = masked_graph()
    readiness = check_ready(RunSpec(graph, lookup), graph.node("calc"), {"a": 1}, {})

    assert not readiness.ready
    assert "linked" in readiness.reason
    assert readiness.reason.endswith(" b")


def test_check_ready_waits_for_a_linked_optional_pin() -> None:
    graph = make_graph(
        [
            node("x", "agent_input", name="x"),
            node("calc", "calculator", operation="add", a=1, b=2),
        ],
        [link("x", "result", "calc", "round_result")],
    )
    readiness = check_ready(RunSpec(graph, lookup), graph.node("calc"), {}, {})

    assert not readiness.ready
    assert "round_result" in readiness.reason


def test_check_ready_linked_pin_with_a_default_still_waits() -> None:
    graph = masked_graph(b=1000)
    readiness = check_ready(RunSpec(graph, lookup), graph.node("calc"), {"a": 1}, {})

    assert not readiness.ready
    assert "b" in readiness.reason


def test_linked_value_wins_over_the_default_of_its_pin() -> None:
    result = run(masked_graph(b=1000), inputs={"x": 1, "y": 5})

    assert result.outputs == {"sum": [6.0]}
    assert [e.status for e in execs(result, "calc")] == [S.COMPLETED]


def test_check_ready_missing_required_unlinked_pin_names_it() -> None:
    graph = make_graph([node("calc", "calculator", a=1, b=2)], [])
    readiness = check_ready(RunSpec(graph, lookup), graph.node("calc"), {}, {})

    assert not readiness.ready
    assert "operation" in readiness.reason


def test_check_ready_uses_static_values_and_masks() -> None:
    graph = masked_graph()
    spec = RunSpec(graph, lookup, nodes_input_masks={"calc": {"operation": "multiply"}})

    readiness = check_ready(spec, graph.node("calc"), {"a": 3}, {"b": 4})

    assert readiness.ready
    assert readiness.inputs == {"operation": "multiply", "a": 3.0, "b": 4.0}


def test_check_ready_mask_satisfies_a_linked_pin() -> None:
    graph = masked_graph()
    spec = RunSpec(graph, lookup, nodes_input_masks={"calc": {"b": 9}})

    readiness = check_ready(spec, graph.node("calc"), {"a": 1}, {})

    assert readiness.ready
    assert readiness.inputs["b"] == 9.0
