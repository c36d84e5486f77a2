"""Graph definitions (SPEC §1): parsing JSON/YAML, validation errors that name node and pin,
and the content hash that tells whether a save changed the graph."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from autoexec.blocks.registry import BlockRegistry, load_registry
from autoexec.errors import GraphValidationError
from autoexec.graph import (
    Graph,
    GraphDefinition,
    graph_warnings,
    parse_definition,
    validate_graph,
)


@pytest.fixture(scope="module")
def registry() -> BlockRegistry:
    return load_registry()


def spec_example() -> dict[str, Any]:
    return {
        "name": "add",
        "nodes": [
            {"id": "a", "block_id": "agent_input", "input_default": {"name": "x"}},
            {
                "id": "calc",
                "block_id": "calculator",
                "input_default": {"operation": "add", "b": 1},
            },
            {"id": "out", "block_id": "agent_output", "input_default": {"name": "sum"}},
        ],
        "links": [
            {"source_id": "a", "source_name": "result", "sink_id": "calc", "sink_name": "a"},
            {
                "source_id": "calc",
                "source_name": "result",
                "sink_id": "out",
                "sink_name": "value",
            },
        ],
    }


def with_link(source: str, source_name: str, sink: str, sink_name: str) -> dict[str, Any]:
    data = spec_example()
    data["links"].append(
        {"source_id": source, "source_name": source_name, "sink_id": sink, "sink_name": sink_name}
    )
    return data


def validation_error(data: dict[str, Any], registry: BlockRegistry) -> str:
    with pytest.raises(GraphValidationError) as info:
        validate_graph(parse_definition(data), registry)
    return str(info.value)


# --- valid graphs ----------------------------------------------------------------------------


def test_spec_example_is_valid(registry: BlockRegistry) -> None:
    definition = parse_definition(spec_example())

    validate_graph(definition, registry)

    assert [n.id for n in definition.nodes] == ["a", "calc", "out"]
    assert definition.links[0].is_static is False
    assert definition.name == "add"


def test_cycles_are_allowed(registry: BlockRegistry) -> None:
    data = with_link("calc", "result", "calc", "a")
    validate_graph(parse_definition(data), registry)


def closed_cycle(prefix: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Two calculators feeding each other: neither can ever start."""
    first, second = f"{prefix}1", f"{prefix}2"
    nodes = [
        {"id": node_id, "block_id": "calculator", "input_default": {"operation": "add", "b": 1}}
        for node_id in (first, second)
    ]
    links = [
        {"source_id": first, "source_name": "result", "sink_id": second, "sink_name": "a"},
        {"source_id": second, "source_name": "result", "sink_id": first, "sink_name": "a"},
    ]
    return nodes, links


def test_graph_where_no_node_can_start_is_refused_naming_the_nodes(
    registry: BlockRegistry,
) -> None:
    nodes, links = closed_cycle("loop")

    message = validation_error({"name": "stuck", "nodes": nodes, "links": links}, registry)

    assert message == (
        "invalid graph: no node can start: every node ('loop1', 'loop2') has an incoming link "
        "and none is an 'agent_input'; give the graph an input node or a node with no incoming "
        "link"
    )


def test_a_loop_entered_from_a_graph_input_can_start(registry: BlockRegistry) -> None:
    data = with_link("calc", "result", "calc", "a")
    data["links"][0]["sink_name"] = "b"  # the input feeds b, the loop feeds a

    definition = parse_definition(data)
    validate_graph(definition, registry)

    assert graph_warnings(definition) == []


def test_closed_cycle_beside_a_chain_is_a_warning_naming_its_nodes(
    registry: BlockRegistry,
) -> None:
    data = spec_example()
    nodes, links = closed_cycle("orphan")
    data["nodes"] += nodes
    data["links"] += links
    definition = parse_definition(data)

    validate_graph(definition, registry)

    assert graph_warnings(definition) == [
        "node(s) 'orphan1', 'orphan2' can never run: no starting node (an 'agent_input' node "
        "or a node with no incoming link) reaches them through links"
    ]


def test_reachable_graphs_have_no_warnings(registry: BlockRegistry) -> None:
    assert graph_warnings(parse_definition(spec_example())) == []
    assert graph_warnings(parse_definition(with_link("calc", "result", "calc", "a"))) == []


def test_error_pin_is_an_output_of_every_block(registry: BlockRegistry) -> None:
    validate_graph(parse_definition(with_link("calc", "error", "out", "value")), registry)


@pytest.mark.parametrize(
    ("source_name", "sink_id", "sink_name"),
    [
        ("result_#_x", "out", "value"),
        ("result_$_0", "out", "value"),
        ("result_@_attr", "out", "value"),
        ("result", "mk", "values_$_3"),
        ("result", "d", "values_#_key"),
        ("result", "d", "values_@_attr"),
    ],
)
def test_dynamic_pins_are_judged_by_their_base_name(
    registry: BlockRegistry, source_name: str, sink_id: str, sink_name: str
) -> None:
    data = spec_example()
    data["nodes"] += [
        {"id": "mk", "block_id": "create_list"},
        {"id": "d", "block_id": "create_dict"},
    ]
    data["links"].append(
        {
            "source_id": "calc",
            "source_name": source_name,
            "sink_id": sink_id,
            "sink_name": sink_name,
        }
    )
    validate_graph(parse_definition(data), registry)


# --- invalid graphs: each error names the node and the pin -----------------------------------


def test_unknown_block_names_node_and_block(registry: BlockRegistry) -> None:
    data = spec_example()
    data["nodes"][1]["block_id"] = "no_such_block"

    message = validation_error(data, registry)

    assert "'calc'" in message
    assert "no_such_block" in message
    assert "unknown block" in message


def test_dangling_link_source_node_missing(registry: BlockRegistry) -> None:
    message = validation_error(with_link("ghost", "result", "out", "value"), registry)

    assert "'ghost'" in message
    assert "does not exist" in message


def test_dangling_link_sink_node_missing(registry: BlockRegistry) -> None:
    message = validation_error(with_link("calc", "result", "phantom", "a"), registry)

    assert "'phantom'" in message
    assert "does not exist" in message


def test_dangling_link_error_names_the_pin_too(registry: BlockRegistry) -> None:
    source_missing = validation_error(with_link("ghost", "ghost_pin", "out", "value"), registry)
    sink_missing = validation_error(with_link("calc", "result", "phantom", "phantom_pin"), registry)

    assert "ghost_pin" in source_missing
    assert "phantom_pin" in sink_missing


def test_unknown_output_pin_names_node_and_pin(registry: BlockRegistry) -> None:
    message = validation_error(with_link("calc", "answer", "out", "value"), registry)

    assert "'calc'" in message
    assert "'answer'" in message
    assert "output pin" in message


def test_unknown_input_pin_names_node_and_pin(registry: BlockRegistry) -> None:
    message = validation_error(with_link("a", "result", "calc", "c"), registry)

    assert "'calc'" in message
    assert "'c'" in message
    assert "input pin" in message


def test_output_pin_used_as_input_is_rejected(registry: BlockRegistry) -> None:
    message = validation_error(with_link("a", "result", "calc", "result"), registry)

    assert "'calc'" in message
    assert "input pin 'result'" in message


@pytest.mark.parametrize(
    ("source_name", "sink_name", "bad_pin"),
    [
        ("result", "nope_$_1", "nope_$_1"),
        ("nope_$_1", "a", "nope_$_1"),
        ("nope_#_k", "a", "nope_#_k"),
    ],
)
def test_dynamic_pin_with_unknown_base_is_rejected(
    registry: BlockRegistry, source_name: str, sink_name: str, bad_pin: str
) -> None:
    message = validation_error(with_link("calc", source_name, "calc", sink_name), registry)

    assert "'calc'" in message
    assert repr(bad_pin) in message


def test_fan_out_on_a_pin_the_block_does_not_have_is_rejected(registry: BlockRegistry) -> None:
    data = spec_example()
    data["nodes"][1]["fan_out"] = "items"

    message = validation_error(data, registry)

    assert message == "invalid graph: node 'calc' (calculator): fan_out names no input pin 'items'"


def test_fan_out_on_an_input_pin_is_valid(registry: BlockRegistry) -> None:
    data = spec_example()
    data["nodes"][1]["fan_out"] = "b"
    data["nodes"][1]["input_default"]["b"] = [1, 2]

    validate_graph(parse_definition(data), registry)


# --- constant inputs, fan-out constants and duplicate links: refused at save --------------------


def test_a_constant_operation_the_calculator_lacks_is_refused_naming_node_and_pin(
    registry: BlockRegistry,
) -> None:
    data = spec_example()
    data["nodes"][1]["input_default"]["operation"] = "sqrt"

    message = validation_error(data, registry)

    assert "node 'calc' (calculator) input 'operation': constant \"sqrt\" is invalid" in message
    assert "'add', 'subtract', 'multiply', 'divide', 'power' or 'modulo'" in message


@pytest.mark.parametrize(
    ("constant", "reason"),
    [("one", "unable to parse string as a number"), (True, "True is a boolean, not a number")],
)
def test_a_constant_number_of_the_wrong_type_is_refused(
    registry: BlockRegistry, constant: Any, reason: str
) -> None:
    data = spec_example()
    data["nodes"][1]["input_default"]["b"] = constant

    message = validation_error(data, registry)

    assert "node 'calc' (calculator) input 'b': constant" in message
    assert reason in message


def test_constants_that_validate_are_accepted(registry: BlockRegistry) -> None:
    data = spec_example()
    data["nodes"][1]["input_default"].update(operation="power", b="2.5", round_result=True)

    validate_graph(parse_definition(data), registry)


def test_a_fan_out_constant_that_is_not_a_list_is_refused(registry: BlockRegistry) -> None:
    data = spec_example()
    data["nodes"][1]["fan_out"] = "b"

    message = validation_error(data, registry)

    assert "node 'calc' (calculator) input 'b': a fan_out input must be a list, not int" in message


def test_each_element_of_a_fan_out_constant_is_checked(registry: BlockRegistry) -> None:
    data = spec_example()
    data["nodes"][1]["fan_out"] = "b"
    data["nodes"][1]["input_default"]["b"] = [1, "two", 3]

    message = validation_error(data, registry)

    assert "node 'calc' (calculator) input 'b' element 1: constant \"two\" is invalid" in message


def test_duplicate_links_are_refused_naming_them(registry: BlockRegistry) -> None:
    data = with_link("calc", "result", "out", "value")

    message = validation_error(data, registry)

    assert "link calc.result -> out.value appears 2 times" in message


def test_two_links_into_one_pin_from_different_pins_are_not_duplicates(
    registry: BlockRegistry,
) -> None:
    data = with_link("a", "result", "out", "value")

    validate_graph(parse_definition(data), registry)


def test_duplicate_node_ids(registry: BlockRegistry) -> None:
    data = spec_example()
    data["nodes"].append({"id": "calc", "block_id": "print"})

    message = validation_error(data, registry)

    assert "duplicate node id 'calc'" in message


def test_duplicate_graph_input_names(registry: BlockRegistry) -> None:
    data = spec_example()
    data["nodes"].append({"id": "a2", "block_id": "agent_input", "input_default": {"name": "x"}})

    message = validation_error(data, registry)

    assert "'x'" in message
    assert "graph input name" in message


def test_duplicate_graph_input_names_names_the_nodes(registry: BlockRegistry) -> None:
    data = spec_example()
    data["nodes"].append({"id": "a2", "block_id": "agent_input", "input_default": {"name": "x"}})

    message = validation_error(data, registry)

    assert "'a'" in message
    assert "'a2'" in message


def test_distinct_graph_input_names_are_valid(registry: BlockRegistry) -> None:
    data = spec_example()
    data["nodes"].append({"id": "a2", "block_id": "agent_input", "input_default": {"name": "y"}})

    validate_graph(parse_definition(data), registry)


def test_every_problem_is_reported_at_once(registry: BlockRegistry) -> None:
    data = with_link("calc", "answer", "ghost", "value")
    data["nodes"][2]["block_id"] = "no_such_block"

    message = validation_error(data, registry)

    assert "no_such_block" in message
    assert "'answer'" in message
    assert "'ghost'" in message


# --- parse_definition ------------------------------------------------------------------------


YAML_TEXT = """
name: add
nodes:
  - id: a
    block_id: agent_input
    input_default: {name: x}
  - id: calc
    block_id: calculator
    input_default:
      operation: add
      b: 1
  - id: out
    block_id: agent_output
    input_default: {name: sum}
links:
  - {source_id: a, source_name: result, sink_id: calc, sink_name: a}
  - {source_id: calc, source_name: result, sink_id: out, sink_name: value, is_static: true}
"""


def test_parse_yaml_text(registry: BlockRegistry) -> None:
    definition = parse_definition(YAML_TEXT)

    validate_graph(definition, registry)
    assert definition.name == "add"
    assert [n.id for n in definition.nodes] == ["a", "calc", "out"]
    assert definition.nodes[1].input_default == {"operation": "add", "b": 1}
    assert [link.is_static for link in definition.links] == [False, True]


def test_parse_json_text_equals_dict() -> None:
    assert parse_definition(json.dumps(spec_example())) == parse_definition(spec_example())


def test_invalid_yaml_is_a_graph_validation_error() -> None:
    with pytest.raises(GraphValidationError, match="not valid JSON or YAML"):
        parse_definition("name: x\nnodes: [a\n  b: }")


def test_yaml_that_is_not_a_mapping_is_a_graph_validation_error() -> None:
    with pytest.raises(GraphValidationError, match="mapping"):
        parse_definition("- 1\n- 2\n")


def test_malformed_definition_names_the_field() -> None:
    with pytest.raises(GraphValidationError) as info:
        parse_definition({"nodes": [{"id": "a"}]})

    assert "nodes.0.block_id" in str(info.value)


def test_unknown_field_in_a_link_is_rejected() -> None:
    data = spec_example()
    data["links"][0]["sink"] = "calc"

    with pytest.raises(GraphValidationError, match="sink"):
        parse_definition(data)


# --- content_hash ----------------------------------------------------------------------------


def reorder_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: reorder_keys(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [reorder_keys(item) for item in value]
    return value


def test_content_hash_is_stable_across_key_order() -> None:
    original = spec_example()
    reordered = reorder_keys(original)
    assert list(reordered) != list(original)
    assert list(reordered["nodes"][1]["input_default"]) == ["b", "operation"]

    assert parse_definition(original).content_hash() == parse_definition(reordered).content_hash()


def test_content_hash_is_stable_across_json_and_yaml() -> None:
    yaml_definition = parse_definition(YAML_TEXT)
    data = spec_example()
    data["links"][1]["is_static"] = True

    assert yaml_definition.content_hash() == parse_definition(data).content_hash()


def test_content_hash_changes_when_a_node_changes() -> None:
    changed = spec_example()
    changed["nodes"][1]["input_default"]["b"] = 2

    original_hash = parse_definition(spec_example()).content_hash()
    assert parse_definition(changed).content_hash() != original_hash


def test_content_hash_changes_when_a_link_changes() -> None:
    changed = spec_example()
    changed["links"][0]["is_static"] = True

    original_hash = parse_definition(spec_example()).content_hash()
    assert parse_definition(changed).content_hash() != original_hash


def test_content_hash_ignores_the_id() -> None:
    with_id = copy.deepcopy(spec_example())
    with_id["id"] = "my-graph"

    original_hash = parse_definition(spec_example()).content_hash()
    assert parse_definition(with_id).content_hash() == original_hash


def test_content_hash_is_a_sha256_hex_digest() -> None:
    digest = GraphDefinition.model_validate(spec_example()).content_hash()

    assert len(digest) == 64
    int(digest, 16)


def test_saved_graph_hashes_like_its_definition() -> None:
    definition = parse_definition(spec_example())
    saved = Graph.model_validate(
        {**definition.model_dump(), "id": "g", "version": 3, "user_id": "alice"}
    )

    assert saved.content_hash() == definition.content_hash()
