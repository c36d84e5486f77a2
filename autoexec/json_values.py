"""What JSON can hold: the one rule for values that cross the engine (graph inputs, node
inputs set at submission, node outputs). JSON has no inf, -inf or NaN, and PostgreSQL's
``json`` refuses them, so a float that is not finite is refused wherever a value comes in."""

from __future__ import annotations

import json
from typing import Any

NOT_FINITE = "it holds a number that is not finite (inf, -inf or NaN), which JSON cannot hold"


def json_problem(value: Any) -> str | None:
    """Why ``value`` is not a JSON value, or None if it is one."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return NOT_FINITE if holds_non_finite_number(value) else str(exc)
    return None


def holds_non_finite_number(value: Any) -> bool:
    """``value`` holds inf, -inf or NaN somewhere inside it (objects JSON cannot hold are
    passed over)."""
    try:
        json.dumps(value, allow_nan=False, default=_opaque)
    except ValueError:
        return not _circular(value)
    return False


def _circular(value: Any) -> bool:
    try:
        json.dumps(value, default=_opaque)
    except ValueError:
        return True
    return False


def _opaque(value: Any) -> None:
    return None
