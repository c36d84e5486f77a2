"""Branching on a comparison: ``condition`` (SPEC §13)."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterator
from typing import Any, Literal

from pydantic import Field

from autoexec.blocks.base import Block, BlockInput, BlockOutput, RunContext

Operator = Literal["==", "!=", ">", "<", ">=", "<="]

_COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
}


class ConditionInput(BlockInput):
    value1: Any = Field(description="The left side of the comparison.")
    operator: Operator = Field(description="How to compare value1 with value2.")
    value2: Any = Field(description="The right side of the comparison.")
    yes_value: Any = Field(default=None, description="Sent on yes_output; value1 if not given.")
    no_value: Any = Field(default=None, description="Sent on no_output; value1 if not given.")


class ConditionOutput(BlockOutput):
    result: bool = Field(description="Whether the comparison holds.")
    yes_output: Any = Field(description="Sent when the comparison holds.")
    no_output: Any = Field(description="Sent when it does not.")


class ConditionBlock(Block[ConditionInput]):
    """Compares two values; numbers (and numeric strings) are compared as numbers."""

    id = "condition"
    name = "Condition"
    description = (
        "Compares two values and sends the result, then a value on either the yes or the no output."
    )
    Input = ConditionInput
    Output = ConditionOutput

    def run(self, data: ConditionInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        result = compare(data.value1, data.operator, data.value2)
        yield "result", result
        if result:
            yield "yes_output", data.value1 if data.yes_value is None else data.yes_value
        else:
            yield "no_output", data.value1 if data.no_value is None else data.no_value


def compare(left: Any, op: Operator, right: Any) -> bool:
    """``left <op> right``, numerically when both sides are numbers or numeric strings."""
    left_number, right_number = as_number(left), as_number(right)
    if left_number is not None and right_number is not None:
        left, right = left_number, right_number
    try:
        return bool(_COMPARISONS[op](left, right))
    except TypeError as exc:
        raise ValueError(
            f"cannot compare {type(left).__name__} {left!r} {op} {type(right).__name__} {right!r}"
        ) from exc


def as_number(value: Any) -> int | float | None:
    """``value`` as a number if it is one or is a string that parses as one, else ``None``.

    Booleans and NaN do not count as numbers.
    """
    if isinstance(value, str):
        value = parse_number(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if isinstance(value, float) and math.isnan(value) else value


def parse_number(text: str) -> int | float | None:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None
