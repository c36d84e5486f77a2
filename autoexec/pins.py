"""Dynamic pins (SPEC §3.2).

A pin name may address part of a value: ``name_$_3`` is element 3 of a list, ``name_#_key`` is
entry ``key`` of a dict and ``name_@_attr`` is attribute ``attr`` of an object. On an output pin
the part is picked from the yielded value; on an input pin the parts are merged into one value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

LIST = "_$_"
DICT = "_#_"
OBJECT = "_@_"
_SPLIT = re.compile(r"(_\$_|_#_|_@_)")


class Missing:
    """The part a dynamic pin addresses does not exist."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = Missing()


@dataclass(frozen=True)
class Pin:
    base: str
    kind: str | None = None
    key: str = ""

    @property
    def is_dynamic(self) -> bool:
        return self.kind is not None


def parse_pin(name: str) -> Pin:
    """Split ``name`` at its first dynamic marker."""
    parts = _SPLIT.split(name, maxsplit=1)
    if len(parts) == 1:
        return Pin(name)
    return Pin(parts[0], parts[1], parts[2])


def base_name(name: str) -> str:
    return parse_pin(name).base


def pick(value: Any, source_pin: str, yielded_name: str) -> Any:
    """The part of ``value`` (yielded on ``yielded_name``) that travels on ``source_pin``.

    Returns ``MISSING`` when the link does not carry this output or the part does not exist.
    """
    if source_pin == yielded_name:
        return value
    pin = parse_pin(source_pin)
    if not pin.is_dynamic or pin.base != yielded_name:
        return MISSING
    return _pick_part(value, pin)


def _pick_part(value: Any, pin: Pin) -> Any:
    if pin.kind == LIST:
        if isinstance(value, list | tuple) and pin.key.lstrip("-").isdigit():
            index = int(pin.key)
            return value[index] if 0 <= index < len(value) else MISSING
        return MISSING
    if pin.kind == DICT:
        return value.get(pin.key, MISSING) if isinstance(value, dict) else MISSING
    if isinstance(value, dict):
        return value.get(pin.key, MISSING)
    return getattr(value, pin.key, MISSING)


def merge_dynamic_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    """Merge dynamic sink pins into their base values.

    ``items_$_0``, ``items_$_2`` become ``items == [v0, "", v2]`` (a gap is filled with "");
    ``d_#_k`` becomes ``d == {"k": v}``; ``o_@_a`` becomes ``o == {"a": v}``. A plain value
    already on the base pin is the starting point of the merge.
    """
    merged = {name: value for name, value in inputs.items() if not parse_pin(name).is_dynamic}
    lists: dict[str, dict[int, Any]] = {}
    for name in sorted(inputs):
        pin = parse_pin(name)
        if pin.kind == LIST and pin.key.isdigit():
            lists.setdefault(pin.base, {})[int(pin.key)] = inputs[name]
        elif pin.kind in (DICT, OBJECT):
            _merge_into_mapping(merged, pin, inputs[name])
    for base, parts in lists.items():
        merged[base] = _list_from_parts(merged.get(base), parts)
    return merged


def _merge_into_mapping(merged: dict[str, Any], pin: Pin, value: Any) -> None:
    current = merged.get(pin.base)
    target = dict(current) if isinstance(current, dict) else {}
    target[pin.key] = value
    merged[pin.base] = target


def _list_from_parts(start: Any, parts: dict[int, Any]) -> list[Any]:
    result = list(start) if isinstance(start, list) else []
    size = max(len(result), max(parts) + 1)
    result.extend([""] * (size - len(result)))
    for index, value in parts.items():
        result[index] = value
    return result
