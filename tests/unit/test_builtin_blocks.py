"""Unit tests of the built-in blocks (SPEC §13): each block run directly, no services."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import ValidationError

from autoexec.blocks.base import Block, RunContext
from autoexec.blocks.builtin import (
    AgentInputBlock,
    AgentOutputBlock,
    CalculatorBlock,
    ConditionBlock,
    CreateDictBlock,
    CreateListBlock,
    FillTextTemplateBlock,
    FindInDictBlock,
    PrintBlock,
    StepThroughItemsBlock,
    StoreValueBlock,
    WaitBlock,
)
from autoexec.blocks.registry import load_registry

BUILTIN_IDS = {
    "agent_input",
    "agent_output",
    "calculator",
    "fill_text_template",
    "condition",
    "step_through_items",
    "store_value",
    "create_list",
    "create_dict",
    "find_in_dict",
    "wait",
    "print",
}

LOGGER_NAME = "tests.builtin_blocks"


def make_context(block_id: str = "test") -> RunContext:
    logger = logging.LoggerAdapter(logging.getLogger(LOGGER_NAME), {"node_id": "n1"})
    return RunContext(
        user_id="u1",
        graph_id="g1",
        graph_version=1,
        graph_exec_id="ge1",
        node_id="n1",
        node_exec_id="ne1",
        block_id=block_id,
        logger=logger,
    )


def run(block: type[Block[Any]], **inputs: Any) -> list[tuple[str, Any]]:
    """Validate ``inputs`` against the block's schema, run it and collect its yields.

    Each yield is also checked against the ``Output`` schema, as the engine does.
    """
    data = block.Input.model_validate(inputs)
    produced = block().run(data, make_context(block.id))
    if isinstance(produced, AsyncIterator):
        pairs = asyncio.run(_collect(produced))
    else:
        assert isinstance(produced, Iterator)
        pairs = list(produced)
    return [(pin, block.validate_output(pin, value)) for pin, value in pairs]


async def _collect(produced: AsyncIterator[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return [pair async for pair in produced]


# --- registry and descriptions ---------------------------------------------------------------


def test_registry_holds_every_builtin() -> None:
    registry = load_registry()
    missing = {block_id for block_id in BUILTIN_IDS if block_id not in registry}
    assert missing == set()


@pytest.mark.parametrize("block_id", sorted(BUILTIN_IDS))
def test_builtin_describes_itself(block_id: str) -> None:
    block = load_registry().get(block_id)
    described = block.describe()
    assert described["id"] == block_id
    assert described["name"]
    assert described["description"].strip()
    assert (block.__doc__ or "").strip()
    assert "error" in described["outputs"]


def test_validate_output_rejects_undeclared_pin() -> None:
    with pytest.raises(ValueError, match="undeclared output pin 'nope'"):
        CalculatorBlock.validate_output("nope", 1)


def test_validate_output_coerces_declared_pin() -> None:
    assert CalculatorBlock.validate_output("result", 3) == 3.0


# --- agent_input / agent_output --------------------------------------------------------------


def test_agent_input_yields_value() -> None:
    assert run(AgentInputBlock, name="x", value=5, default=1) == [("result", 5)]


def test_agent_input_falls_back_to_default() -> None:
    assert run(AgentInputBlock, name="x", default="d") == [("result", "d")]


def test_agent_input_without_value_or_default_yields_nothing() -> None:
    assert run(AgentInputBlock, name="x") == []


def test_agent_input_keeps_falsy_value() -> None:
    assert run(AgentInputBlock, name="x", value=0, default=9) == [("result", 0)]


def test_agent_input_requires_name() -> None:
    assert AgentInputBlock.required_inputs() == {"name"}
    with pytest.raises(ValidationError):
        AgentInputBlock.Input.model_validate({"value": 1})


def test_agent_output_yields_output_then_name() -> None:
    assert run(AgentOutputBlock, name="sum", value=3) == [("output", 3), ("name", "sum")]


def test_agent_output_formats_value() -> None:
    result = run(AgentOutputBlock, name="sum", value=3.0, format="sum={value}")
    assert result == [("output", "sum=3.0"), ("name", "sum")]


def test_agent_output_bad_format_is_value_error() -> None:
    with pytest.raises(ValueError, match="other"):
        run(AgentOutputBlock, name="sum", value=1, format="{other}")


def test_agent_output_requires_name_and_value() -> None:
    assert AgentOutputBlock.required_inputs() == {"name", "value"}


# --- calculator ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "a", "b", "expected"),
    [
        ("add", 1, 2, 3.0),
        ("subtract", 1, 2, -1.0),
        ("multiply", 3, 4, 12.0),
        ("divide", 7, 2, 3.5),
        ("power", 2, 10, 1024.0),
        ("modulo", 7, 3, 1.0),
    ],
)
def test_calculator_operations(operation: str, a: float, b: float, expected: float) -> None:
    assert run(CalculatorBlock, operation=operation, a=a, b=b) == [("result", expected)]


def test_calculator_whole_result_is_an_int() -> None:
    [(pin, value)] = run(CalculatorBlock, operation="add", a=1, b=2)
    assert (pin, value) == ("result", 3)
    assert isinstance(value, int)


def test_calculator_fractional_result_stays_float() -> None:
    [(_, value)] = run(CalculatorBlock, operation="divide", a=1, b=4)
    assert value == 0.25


def test_calculator_accepts_numeric_strings() -> None:
    assert run(CalculatorBlock, operation="add", a="1.5", b="2") == [("result", 3.5)]


@pytest.mark.parametrize("operation", ["divide", "modulo"])
def test_calculator_division_by_zero(operation: str) -> None:
    with pytest.raises(ValueError, match="zero"):
        run(CalculatorBlock, operation=operation, a=1, b=0)


def test_calculator_round_result() -> None:
    result = run(CalculatorBlock, operation="divide", a=10, b=3, round_result=True)
    assert result == [("result", 3.0)]


def test_calculator_overflow_is_value_error() -> None:
    with pytest.raises(ValueError, match="power"):
        run(CalculatorBlock, operation="power", a=10, b=1000)


def test_calculator_complex_result_is_value_error() -> None:
    with pytest.raises(ValueError, match="not a real number"):
        run(CalculatorBlock, operation="power", a=-8, b=0.5)


@pytest.mark.parametrize("pin", ["a", "b"])
def test_calculator_refuses_a_boolean_as_a_number(pin: str) -> None:
    numbers: dict[str, Any] = {"a": 1, "b": 1, pin: True}
    with pytest.raises(ValidationError, match="True is a boolean, not a number") as refused:
        CalculatorBlock.Input.model_validate({"operation": "add", **numbers})
    assert [error["loc"] for error in refused.value.errors()] == [(pin,)]


def test_calculator_rejects_unknown_operation() -> None:
    with pytest.raises(ValidationError):
        CalculatorBlock.Input.model_validate({"operation": "sqrt", "a": 1, "b": 2})


# --- fill_text_template ----------------------------------------------------------------------


def test_fill_text_template() -> None:
    result = run(FillTextTemplateBlock, format="Hello, {who}! {n}", values={"who": "Ada", "n": 2})
    assert result == [("output", "Hello, Ada! 2")]


def test_fill_text_template_keeps_escaped_braces() -> None:
    result = run(FillTextTemplateBlock, format="{{x}} {x}", values={"x": 1})
    assert result == [("output", "{x} 1")]


def test_fill_text_template_missing_placeholder_names_it() -> None:
    with pytest.raises(ValueError, match="placeholder 'who' has no value"):
        run(FillTextTemplateBlock, format="Hello, {who}!", values={"name": "Ada"})


def test_fill_text_template_positional_placeholder_is_value_error() -> None:
    with pytest.raises(ValueError):
        run(FillTextTemplateBlock, format="Hello, {}!", values={})


# --- condition -------------------------------------------------------------------------------


def test_condition_true_yields_result_then_yes_output() -> None:
    result = run(ConditionBlock, value1=3, operator=">", value2=2, yes_value="big")
    assert result == [("result", True), ("yes_output", "big")]


def test_condition_false_yields_result_then_no_output() -> None:
    result = run(ConditionBlock, value1=1, operator=">", value2=2, no_value="small")
    assert result == [("result", False), ("no_output", "small")]


def test_condition_outputs_value1_by_default() -> None:
    assert run(ConditionBlock, value1="a", operator="==", value2="a") == [
        ("result", True),
        ("yes_output", "a"),
    ]
    assert run(ConditionBlock, value1="a", operator="==", value2="b") == [
        ("result", False),
        ("no_output", "a"),
    ]


@pytest.mark.parametrize(
    ("value1", "operator", "value2", "expected"),
    [
        ("3", ">", 2, True),
        ("10", ">", "9", True),
        (2, "==", "2.0", True),
        ("1.5", "<=", 1.5, True),
        (5, "!=", 5, False),
        (4, ">=", 5, False),
        (1, "<", 2, True),
        ("abc", "<", "abd", True),
        (True, "==", "1", False),
    ],
)
def test_condition_comparisons(value1: Any, operator: str, value2: Any, expected: bool) -> None:
    pairs = run(ConditionBlock, value1=value1, operator=operator, value2=value2)
    assert pairs[0] == ("result", expected)


def test_condition_incomparable_values_is_value_error() -> None:
    with pytest.raises(ValueError, match="cannot compare"):
        run(ConditionBlock, value1="abc", operator=">", value2=1)


def test_condition_rejects_unknown_operator() -> None:
    with pytest.raises(ValidationError):
        ConditionBlock.Input.model_validate({"value1": 1, "operator": "=~", "value2": 1})


# --- step_through_items, create_list, create_dict --------------------------------------------


def test_step_through_list_yields_index_then_item() -> None:
    result = run(StepThroughItemsBlock, items=["a", "b"])
    assert result == [("key", 0), ("item", "a"), ("key", 1), ("item", "b")]


def test_step_through_dict_yields_key_then_item_in_order() -> None:
    result = run(StepThroughItemsBlock, items={"z": 1, "a": 2})
    assert result == [("key", "z"), ("item", 1), ("key", "a"), ("item", 2)]


def test_step_through_empty_yields_nothing() -> None:
    assert run(StepThroughItemsBlock, items=[]) == []


def test_step_through_rejects_scalar() -> None:
    with pytest.raises(ValidationError):
        StepThroughItemsBlock.Input.model_validate({"items": 5})


def test_create_list() -> None:
    assert run(CreateListBlock, values=[1, "two", None]) == [("list", [1, "two", None])]


def test_create_dict() -> None:
    assert run(CreateDictBlock, values={"a": 1}) == [("dictionary", {"a": 1})]


# --- find_in_dict ----------------------------------------------------------------------------


@dataclass
class Point:
    x: int
    _hidden: int = 0


def test_find_in_dict_found() -> None:
    assert run(FindInDictBlock, input={"a": 1, "b": 2}, key="b") == [("output", 2)]


def test_find_in_dict_missing_yields_input() -> None:
    data = {"a": 1}
    assert run(FindInDictBlock, input=data, key="zzz") == [("missing", data)]


def test_find_in_dict_int_key_matches_string_key() -> None:
    assert run(FindInDictBlock, input={"1": "one"}, key=1) == [("output", "one")]


def test_find_in_dict_keeps_falsy_values() -> None:
    assert run(FindInDictBlock, input={"a": None}, key="a") == [("output", None)]


@pytest.mark.parametrize(("key", "expected"), [(1, "b"), ("0", "a"), (-1, "c")])
def test_find_in_list_by_index(key: Any, expected: str) -> None:
    assert run(FindInDictBlock, input=["a", "b", "c"], key=key) == [("output", expected)]


@pytest.mark.parametrize("key", [3, "x", -4])
def test_find_in_list_missing_index(key: Any) -> None:
    assert run(FindInDictBlock, input=["a", "b", "c"], key=key) == [("missing", ["a", "b", "c"])]


def test_find_in_object_attribute() -> None:
    point = Point(x=4)
    assert run(FindInDictBlock, input=point, key="x") == [("output", 4)]
    assert run(FindInDictBlock, input=point, key="y") == [("missing", point)]


def test_find_in_object_hides_private_attributes() -> None:
    point = Point(x=4)
    assert run(FindInDictBlock, input=point, key="_hidden") == [("missing", point)]
    assert run(FindInDictBlock, input=point, key="__class__") == [("missing", point)]


def test_find_in_string_is_missing() -> None:
    assert run(FindInDictBlock, input="text", key="upper") == [("missing", "text")]


# --- store_value, wait, print ----------------------------------------------------------------


def test_store_value_yields_data_when_given() -> None:
    assert run(StoreValueBlock, input="trigger", data=42) == [("output", 42)]


def test_store_value_yields_input_without_data() -> None:
    assert run(StoreValueBlock, input="trigger") == [("output", "trigger")]


def test_store_value_is_static() -> None:
    assert StoreValueBlock.static_output is True
    assert StoreValueBlock.describe()["static_output"] is True


def test_wait_yields_data() -> None:
    assert run(WaitBlock, seconds=0, data="later") == [("output", "later")]


def test_wait_is_cancellable() -> None:
    async def cancel_wait() -> None:
        data = WaitBlock.Input.model_validate({"seconds": 60, "data": 1})
        produced = WaitBlock().run(data, make_context())
        assert isinstance(produced, AsyncIterator)
        task = asyncio.ensure_future(_collect(produced))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(asyncio.wait_for(cancel_wait(), timeout=5))


@pytest.mark.parametrize("seconds", [-1, float("inf"), "soon"])
def test_wait_rejects_bad_seconds(seconds: Any) -> None:
    with pytest.raises(ValidationError):
        WaitBlock.Input.model_validate({"seconds": seconds})


def test_print_logs_and_yields_text(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=LOGGER_NAME):
        result = run(PrintBlock, text="hello")
    assert result == [("output", "hello")]
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER_NAME] == ["hello"]
