"""Dynamic pins (SPEC §3.2): parsing pin names, picking parts of outputs, merging sink pins."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from autoexec.pins import (
    DICT,
    LIST,
    MISSING,
    OBJECT,
    Pin,
    base_name,
    merge_dynamic_inputs,
    parse_pin,
    pick,
)

# --- parse_pin ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("result", Pin("result")),
        ("items_$_3", Pin("items", LIST, "3")),
        ("d_#_key", Pin("d", DICT, "key")),
        ("o_@_attr", Pin("o", OBJECT, "attr")),
        ("my_values_#_some_key", Pin("my_values", DICT, "some_key")),
    ],
)
def test_parse_pin(name: str, expected: Pin) -> None:
    assert parse_pin(name) == expected
    assert parse_pin(name).is_dynamic is (expected.kind is not None)
    assert base_name(name) == expected.base


def test_parse_pin_splits_at_the_first_marker_only() -> None:
    pin = parse_pin("d_#_outer_$_1")
    assert (pin.base, pin.kind, pin.key) == ("d", DICT, "outer_$_1")


def test_plain_name_with_underscores_is_not_dynamic() -> None:
    pin = parse_pin("round_result")
    assert not pin.is_dynamic
    assert pin.base == "round_result"


# --- pick ------------------------------------------------------------------------------------


def test_plain_source_pin_carries_the_value_as_is() -> None:
    value = {"a": [1, 2]}
    assert pick(value, "result", "result") is value


def test_plain_source_pin_does_not_carry_another_output() -> None:
    assert pick(5, "result", "other") is MISSING


def test_dynamic_source_pin_of_another_output_does_not_travel() -> None:
    assert pick([1, 2], "other_$_0", "result") is MISSING


@pytest.mark.parametrize(("index", "expected"), [("0", "a"), ("1", "b"), ("2", "c")])
def test_list_index_is_picked(index: str, expected: str) -> None:
    assert pick(["a", "b", "c"], f"result_$_{index}", "result") == expected


@pytest.mark.parametrize("index", ["3", "99"])
def test_list_index_out_of_range_is_missing(index: str) -> None:
    assert pick(["a", "b", "c"], f"result_$_{index}", "result") is MISSING


def test_list_index_on_a_non_list_is_missing() -> None:
    assert pick({"0": "x"}, "result_$_0", "result") is MISSING
    assert pick("abc", "result_$_0", "result") is MISSING


def test_list_index_that_is_not_a_number_is_missing() -> None:
    assert pick(["a"], "result_$_first", "result") is MISSING


def test_dict_key_is_picked() -> None:
    assert pick({"k": 1, "j": 2}, "dictionary_#_k", "dictionary") == 1


def test_dict_key_holding_a_falsy_value_travels() -> None:
    assert pick({"k": 0}, "dictionary_#_k", "dictionary") == 0
    assert pick({"k": None}, "dictionary_#_k", "dictionary") is None


def test_missing_dict_key_is_missing() -> None:
    assert pick({"k": 1}, "dictionary_#_nope", "dictionary") is MISSING


def test_dict_key_on_a_non_dict_is_missing() -> None:
    assert pick([1, 2], "dictionary_#_k", "dictionary") is MISSING


@dataclass
class Point:
    x: int
    y: int


def test_object_attribute_is_picked() -> None:
    assert pick(Point(3, 4), "result_@_y", "result") == 4


def test_missing_object_attribute_is_missing() -> None:
    assert pick(Point(3, 4), "result_@_z", "result") is MISSING


def test_object_pin_on_a_dict_takes_the_key() -> None:
    assert pick({"x": 7}, "result_@_x", "result") == 7
    assert pick({"x": 7}, "result_@_y", "result") is MISSING


# --- merge_dynamic_inputs --------------------------------------------------------------------


def test_plain_inputs_are_unchanged() -> None:
    inputs: dict[str, Any] = {"a": 1, "b": [2], "c": {"d": 3}}
    assert merge_dynamic_inputs(inputs) == inputs


def test_list_parts_merge_in_index_order() -> None:
    merged = merge_dynamic_inputs({"items_$_1": "b", "items_$_0": "a", "items_$_2": "c"})
    assert merged == {"items": ["a", "b", "c"]}


def test_list_gap_is_filled_with_empty_string() -> None:
    merged = merge_dynamic_inputs({"items_$_0": "x", "items_$_2": "z"})
    assert merged == {"items": ["x", "", "z"]}


def test_list_parts_sort_numerically_not_as_text() -> None:
    parts = {f"items_$_{i}": i for i in range(12)}
    assert merge_dynamic_inputs(parts) == {"items": list(range(12))}


def test_dict_parts_merge_into_a_dict() -> None:
    merged = merge_dynamic_inputs({"d_#_k": 1, "d_#_j": "two", "other": True})
    assert merged == {"d": {"k": 1, "j": "two"}, "other": True}


def test_object_parts_merge_into_a_dict() -> None:
    merged = merge_dynamic_inputs({"o_@_a": 1, "o_@_b": 2})
    assert merged == {"o": {"a": 1, "b": 2}}


def test_plain_list_base_is_the_start_of_the_merge() -> None:
    merged = merge_dynamic_inputs({"items": ["a", "b", "c"], "items_$_1": "B"})
    assert merged == {"items": ["a", "B", "c"]}


def test_plain_list_base_is_extended_by_parts_with_gap_filled() -> None:
    merged = merge_dynamic_inputs({"items": ["a"], "items_$_3": "d"})
    assert merged == {"items": ["a", "", "", "d"]}


def test_plain_dict_base_is_the_start_of_the_merge() -> None:
    base = {"keep": 1, "k": "old"}
    merged = merge_dynamic_inputs({"d": base, "d_#_k": "new", "d_#_added": 2})
    assert merged == {"d": {"keep": 1, "k": "new", "added": 2}}
    assert base == {"keep": 1, "k": "old"}, "the base value must not be mutated"


def test_plain_dict_base_is_the_start_of_an_object_merge() -> None:
    merged = merge_dynamic_inputs({"o": {"a": 1}, "o_@_b": 2})
    assert merged == {"o": {"a": 1, "b": 2}}


def test_several_dynamic_bases_merge_independently() -> None:
    merged = merge_dynamic_inputs({"l_$_1": 1, "d_#_k": "v", "o_@_a": "x", "plain": 0, "l_$_0": 0})
    assert merged == {"l": [0, 1], "d": {"k": "v"}, "o": {"a": "x"}, "plain": 0}
