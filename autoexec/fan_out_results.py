"""What a fan-out node yields (SPEC §8.3), shared by the engine and the reference interpreter:
each output pin gathered over the elements in element order, once; an empty list on each
declared output pin over no element; or an error naming the first failed element."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from autoexec.blocks.base import ERROR_PIN, Block


def elements_of(inputs: Mapping[str, Any], pin: str) -> list[Any]:
    """The list the node fans out over; a ValueError (the node fails) if it is not one."""
    value = inputs.get(pin)
    if not isinstance(value, list):
        raise ValueError(f"fan_out input {pin!r} must be a list, not {type(value).__name__}")
    return value


def empty_outputs(block: type[Block[Any]]) -> list[tuple[str, list[Any]]]:
    """What a fan-out over no element yields: an empty list on each declared output pin."""
    return [(pin, []) for pin in block.Output.model_fields if pin != ERROR_PIN]


def gathered(elements: Sequence[Sequence[Sequence[Any]]]) -> list[tuple[str, list[Any]]]:
    """Each pin any element yielded, in the order pins first came, with one value per element
    in element order: the last value that element yielded on it, or None if it yielded none."""
    last = [{pin: value for pin, value in outputs} for outputs in elements]
    pins = list(dict.fromkeys(pin for outputs in elements for pin, _ in outputs))
    return [(pin, [values.get(pin) for values in last]) for pin in pins]


def failed_element_error(index: int, error: str) -> str:
    """The error of a fan-out node whose element ``index`` (the first that failed) failed."""
    return f"fan-out element {index} failed: {error}"
