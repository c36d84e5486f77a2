"""Graph inputs checked against the pins they feed, at submission (SPEC §3.3)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from autoexec.blocks.base import Block, BlockInput, BlockOutput, RunContext
from autoexec.blocks.builtin import CalculatorBlock, FillTextTemplateBlock
from autoexec.blocks.registry import load_registry
from autoexec.dataflow import BlockLookup
from autoexec.engine.submission import RunRequest, validate_request
from autoexec.errors import BlockNotFoundError, InputValidationError
from autoexec.graph import Graph
from autoexec.pins import merge_dynamic_inputs

REGISTRY = load_registry()


class NumbersInput(BlockInput):
    numbers: list[int]
    label: str


class NumbersBlock(Block[NumbersInput]):
    id = "test_numbers"
    name = "Numbers"
    Input = NumbersInput
    Output = BlockOutput

    def run(self, data: NumbersInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        yield from ()


def lookup(block_id: str) -> type[Block[Any]]:
    return NumbersBlock if block_id == NumbersBlock.id else REGISTRY.get(block_id)


def make_graph(sinks: list[dict[str, Any]], links: list[tuple[str, str, str]]) -> Graph:
    """Graph input ``x`` (node ``x``) feeding ``sinks`` along ``(source_pin, sink, sink_pin)``."""
    nodes = [{"id": "x", "block_id": "agent_input", "input_default": {"name": "x"}}, *sinks]
    return Graph.model_validate(
        {
            "id": "g",
            "version": 1,
            "user_id": "u",
            "nodes": nodes,
            "links": [
                {"source_id": "x", "source_name": s, "sink_id": t, "sink_name": p}
                for s, t, p in links
            ],
        }
    )


CALC = {"id": "add", "block_id": "calculator", "input_default": {"operation": "add", "b": 1}}
TEMPLATE = {"id": "greet", "block_id": "fill_text_template", "input_default": {"format": "{x}"}}
NUMBERS = {"id": "nums", "block_id": "test_numbers", "input_default": {"label": "n"}}


def refusal(
    graph: Graph, inputs: dict[str, Any], blocks: BlockLookup = lookup, **request: Any
) -> str | None:
    try:
        validate_request(graph, RunRequest("g", "u", inputs, **request), blocks)
    except InputValidationError as exc:
        return str(exc)
    return None


def test_input_that_cannot_feed_a_number_pin_is_refused_naming_input_node_and_pin() -> None:
    graph = make_graph([CALC], [("result", "add", "a")])

    assert refusal(graph, {"x": "abc"}) == (
        "graph input 'x' = 'abc' cannot feed pin 'a' of node 'add' (calculator): "
        "Input should be a valid number, unable to parse string as a number"
    )


def test_input_that_coerces_like_the_ready_check_is_accepted() -> None:
    graph = make_graph([CALC], [("result", "add", "a")])

    assert refusal(graph, {"x": "2.5"}) is None
    assert refusal(graph, {"x": 2}) is None


def test_every_pin_an_input_feeds_is_checked() -> None:
    graph = make_graph(
        [CALC, TEMPLATE], [("result", "greet", "values_#_x"), ("result", "add", "b")]
    )

    problem = refusal(graph, {"x": [1]})

    assert problem is not None
    assert "cannot feed pin 'b' of node 'add' (calculator): Input should be a valid number" in (
        problem
    )
    assert "greet" not in problem  # a dict of anything takes a list as an entry


def test_dynamic_source_pin_checks_the_part_it_picks() -> None:
    graph = make_graph([CALC], [("result_#_k", "add", "a")])

    assert refusal(graph, {"x": {"k": 3, "other": "abc"}}) is None
    problem = refusal(graph, {"x": {"k": "abc"}})
    assert problem is not None and problem.startswith("graph input 'x' = {'k': 'abc'} cannot feed")
    assert refusal(graph, {"x": {"other": "abc"}}) is None  # the part does not travel


def test_dynamic_sink_pin_checks_the_element_against_the_item_type() -> None:
    graph = make_graph([NUMBERS], [("result", "nums", "numbers_$_1")])

    assert refusal(graph, {"x": "7"}) is None
    assert refusal(graph, {"x": "seven"}) == (
        "graph input 'x' = 'seven' cannot feed pin 'numbers_$_1' of node 'nums' (test_numbers): "
        "Input should be a valid integer, unable to parse string as an integer"
    )


def test_container_pin_reports_where_inside_the_value() -> None:
    graph = make_graph([NUMBERS], [("result", "nums", "numbers")])

    problem = refusal(graph, {"x": [1, "two"]})

    assert problem is not None
    assert problem.endswith(
        "(test_numbers): 1: Input should be a valid integer, unable to parse string as an integer"
    )


def test_masked_skipped_or_absent_inputs_are_not_checked() -> None:
    graph = make_graph([CALC], [("result", "add", "a")])

    assert refusal(graph, {"x": "abc"}, nodes_input_masks={"add": {"a": 1}}) is None
    assert refusal(graph, {"x": "abc"}, nodes_input_masks={"x": {"value": 1}}) is None
    assert refusal(graph, {"x": "abc"}, nodes_to_skip=["add"]) is None
    assert refusal(graph, {"x": "abc"}, nodes_to_skip=["x"]) is None
    assert refusal(graph, {"x": None}) is None  # the input node then yields nothing


def test_long_values_are_cut_in_the_message() -> None:
    graph = make_graph([CALC], [("result", "add", "a")])

    problem = refusal(graph, {"x": "y" * 500})

    assert problem is not None and "'yyyy" in problem and "y" * 100 not in problem


@pytest.mark.parametrize(
    ("value", "refused"), [("abc", True), ([1], True), ({"a": 1}, True), ("3", False), (3, False)]
)
def test_submission_refuses_what_the_ready_check_would_fail(value: Any, refused: bool) -> None:
    graph = make_graph([CALC], [("result", "add", "a")])

    assert _validates(CalculatorBlock, {"operation": "add", "b": 1, "a": value}) is not refused
    assert (refusal(graph, {"x": value}) is not None) is refused


def test_text_template_takes_anything_as_a_value() -> None:
    graph = make_graph([TEMPLATE], [("result", "greet", "values_#_x")])

    for value in ("abc", 1, [1, 2], {"a": None}):
        assert refusal(graph, {"x": value}) is None
    assert _validates(FillTextTemplateBlock, {"format": "{x}", "values_#_x": [1]})


def _validates(block: type[Block[Any]], raw: dict[str, Any]) -> bool:
    try:
        block.Input.model_validate(merge_dynamic_inputs(raw))
    except ValueError:
        return False
    return True


def test_a_block_this_process_does_not_know_is_left_to_the_workers() -> None:
    graph = make_graph(
        [{"id": "custom", "block_id": "only_on_workers"}], [("result", "custom", "text")]
    )

    def workers_only(block_id: str) -> type[Block[Any]]:
        if block_id == "only_on_workers":
            raise BlockNotFoundError(f"no block {block_id!r}")
        return REGISTRY.get(block_id)

    assert refusal(graph, {"x": "abc"}, blocks=workers_only) is None


# --- AUTOEXEC_MAX_INPUT_BYTES ---------------------------------------------------------------


def test_a_graph_input_over_the_size_limit_is_refused_naming_it() -> None:
    graph = Graph.model_validate(
        {
            "id": "g",
            "version": 1,
            "user_id": "u",
            "nodes": [{"id": "text", "block_id": "agent_input", "input_default": {"name": "text"}}],
        }
    )
    request = RunRequest("g", "u", {"text": "x" * 2000})

    with pytest.raises(InputValidationError) as refused:
        validate_request(graph, request, REGISTRY.get, max_input_bytes=1024)

    assert str(refused.value) == (
        "graph input 'text' is 2,002 bytes of JSON, over the limit of 1,024 "
        "(AUTOEXEC_MAX_INPUT_BYTES): pass a reference to the data (a URL, a path) instead"
    )
    validate_request(graph, request, REGISTRY.get, max_input_bytes=2002)
