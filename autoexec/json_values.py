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
        return NOT_FINITE if _only_not_finite(value) else str(exc)
    return None


def _only_not_finite(value: Any) -> bool:
    """``value`` would be JSON if JSON allowed inf and NaN."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
