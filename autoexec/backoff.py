"""How long to wait before trying again: the one backoff of the engine, used for a node's
retries (a block's ``TransientError``) and for a webhook's retries.

The wait doubles with each retry up to a cap, and is drawn at random in the upper half of that
("equal jitter"): retries of work that failed together (a rate limit, a receiver that went down)
spread out instead of coming back at the same instant, yet never wait less than half the
doubled wait nor more than the cap.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable


def backoff_delay(
    base_seconds: float,
    attempt: int,
    cap_seconds: float,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before the retry that follows ``attempt`` (0 for the first failure):
    a value in ``[d / 2, d]`` where ``d = min(cap_seconds, base_seconds * 2 ** attempt)``.
    ``rng`` returns a number in ``[0, 1]`` (a test passes its own for a known delay)."""
    doubled = _doubled(base_seconds, attempt, cap_seconds)
    return doubled / 2 + doubled / 2 * rng()


def _doubled(base_seconds: float, attempt: int, cap_seconds: float) -> float:
    try:
        return min(cap_seconds, math.ldexp(base_seconds, attempt))  # exact base * 2 ** attempt
    except OverflowError:  # past the largest float, so past any cap
        return cap_seconds
