"""Arithmetic on two numbers: ``calculator`` (SPEC §13)."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from autoexec.blocks.base import Block, BlockCost, BlockInput, BlockOutput, RunContext

Operation = Literal["add", "subtract", "multiply", "divide", "power", "modulo"]

_OPERATIONS: dict[str, Callable[[float, float], Any]] = {
    "add": operator.add,
    "subtract": operator.sub,
    "multiply": operator.mul,
    "divide": operator.truediv,
    "power": operator.pow,
    "modulo": operator.mod,
}


def refuse_boolean(value: Any) -> Any:
    """Pydantic takes ``true`` for the number 1; a calculator input refuses it instead."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is a boolean, not a number: give a number such as 1 or 0")
    return value


Number = Annotated[float, BeforeValidator(refuse_boolean)]


class CalculatorInput(BlockInput):
    operation: Operation = Field(description="What to do with a and b.")
    a: Number = Field(description="The first number.")
    b: Number = Field(description="The second number.")
    round_result: bool = Field(default=False, description="Round the result to a whole number.")


class CalculatorOutput(BlockOutput):
    result: int | float = Field(description="The result; a whole number comes out as an int.")


class CalculatorBlock(Block[CalculatorInput]):
    """Applies one arithmetic operation to ``a`` and ``b``; dividing by zero is a user error."""

    id = "calculator"
    name = "Calculator"
    description = (
        "Adds, subtracts, multiplies, divides, raises to a power or takes the remainder "
        "of two numbers."
    )
    Input = CalculatorInput
    Output = CalculatorOutput
    # Charged only with metering on (AUTOEXEC_BILLING_ENABLED); the first matching cost applies.
    costs = (BlockCost(3, filter={"operation": "power"}), BlockCost(1))

    def run(self, data: CalculatorInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        result = calculate(data.operation, data.a, data.b)
        yield "result", as_number(round_whole(result) if data.round_result else result)


def calculate(operation: Operation, a: float, b: float) -> float:
    """``a <operation> b``; raises ``ValueError`` when it has no real, finite answer."""
    if operation in ("divide", "modulo") and b == 0:
        raise ValueError(f"division by zero in {operation}({a}, {b}): give b a value other than 0")
    try:
        result = _OPERATIONS[operation](a, b)
    except (ZeroDivisionError, OverflowError) as exc:
        raise ValueError(f"cannot {operation} {a} and {b}: {exc}") from exc
    if isinstance(result, complex):
        raise ValueError(f"{operation} of {a} and {b} is not a real number")
    return float(result)


def as_number(value: float) -> int | float:
    """A whole, exactly representable float as an int (``2.0`` -> ``2``); else unchanged."""
    if math.isfinite(value) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    return value


def round_whole(value: float) -> float:
    """``value`` rounded to a whole number (half to even); infinity and NaN stay as they are."""
    return float(round(value)) if math.isfinite(value) else value
