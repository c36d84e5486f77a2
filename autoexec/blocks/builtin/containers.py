"""Blocks that build and take apart lists and dicts (SPEC §13): ``step_through_items``,
``create_list``, ``create_dict`` and ``find_in_dict``."""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pydantic import Field

from autoexec.blocks.base import Block, BlockInput, BlockOutput, RunContext


class StepThroughItemsInput(BlockInput):
    items: list[Any] | dict[Any, Any] = Field(description="The list or dict to go through.")


class StepThroughItemsOutput(BlockOutput):
    item: Any = Field(description="One element of the list, or one value of the dict.")
    key: Any = Field(description="The element's index in the list, or its key in the dict.")


class StepThroughItemsBlock(Block[StepThroughItemsInput]):
    """For each element, in order, yields ``key`` (list index or dict key) and then ``item``."""

    id = "step_through_items"
    name = "Step through items"
    description = "Sends the elements of a list or dict one at a time, each with its index or key."
    Input = StepThroughItemsInput
    Output = StepThroughItemsOutput

    def run(self, data: StepThroughItemsInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        pairs = data.items.items() if isinstance(data.items, dict) else enumerate(data.items)
        for key, item in pairs:
            yield "key", key
            yield "item", item


class CreateListInput(BlockInput):
    values: list[Any] = Field(description="The elements of the list.")


class CreateListOutput(BlockOutput):
    list: builtins.list[Any] = Field(description="The list.")


class CreateListBlock(Block[CreateListInput]):
    """Yields ``values`` as one list; links into ``values_$_<n>`` build it element by element."""

    id = "create_list"
    name = "Create list"
    description = "Builds a list from the values given to it."
    Input = CreateListInput
    Output = CreateListOutput

    def run(self, data: CreateListInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        yield "list", data.values


class CreateDictInput(BlockInput):
    values: dict[str, Any] = Field(description="The entries of the dict.")


class CreateDictOutput(BlockOutput):
    dictionary: dict[str, Any] = Field(description="The dict.")


class CreateDictBlock(Block[CreateDictInput]):
    """Yields ``values`` as one dict; links into ``values_#_<key>`` build it entry by entry."""

    id = "create_dict"
    name = "Create dictionary"
    description = "Builds a dictionary (named values) from the entries given to it."
    Input = CreateDictInput
    Output = CreateDictOutput

    def run(self, data: CreateDictInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        yield "dictionary", data.values


class FindInDictInput(BlockInput):
    input: Any = Field(description="The dict, list or object to look in.")
    key: str | int = Field(description="The dict key, list index or attribute name to look up.")


class FindInDictOutput(BlockOutput):
    output: Any = Field(description="The value found under the key.")
    missing: Any = Field(description="The input, sent when the key is not there.")


class FindInDictBlock(Block[FindInDictInput]):
    """Looks ``key`` up in a dict, a list (an index, negative from the end) or an object's
    public attributes; yields ``output`` when found, else the input on ``missing``."""

    id = "find_in_dict"
    name = "Find in dictionary"
    description = (
        "Looks up a key in a dictionary (or an index in a list) and sends its value, "
        "or sends the input on 'missing' when the key is not there."
    )
    Input = FindInDictInput
    Output = FindInDictOutput

    def run(self, data: FindInDictInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        found = find(data.input, data.key)
        if found is _NOT_FOUND:
            yield "missing", data.input
        else:
            yield "output", found


_NOT_FOUND: Any = object()
_NO_ATTRIBUTES = (str, bytes, int, float, bool, type(None))


def find(container: Any, key: str | int) -> Any:
    """The value under ``key`` in ``container``, or ``_NOT_FOUND``."""
    if isinstance(container, Mapping):
        return _find_in_mapping(container, key)
    if isinstance(container, Sequence) and not isinstance(container, str | bytes):
        return _find_in_sequence(container, key)
    return _find_attribute(container, str(key))


def _find_in_mapping(mapping: Mapping[Any, Any], key: str | int) -> Any:
    if key in mapping:
        return mapping[key]
    return mapping.get(str(key), _NOT_FOUND)


def _find_in_sequence(sequence: Sequence[Any], key: str | int) -> Any:
    try:
        index = int(key)
    except ValueError:
        return _NOT_FOUND
    return sequence[index] if -len(sequence) <= index < len(sequence) else _NOT_FOUND


def _find_attribute(obj: Any, name: str) -> Any:
    if name.startswith("_") or isinstance(obj, _NO_ATTRIBUTES):
        return _NOT_FOUND
    return getattr(obj, name, _NOT_FOUND)
