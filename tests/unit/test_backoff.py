"""The one backoff (node retries, webhook retries): doubling per attempt up to a cap, drawn
in the upper half of that ("equal jitter")."""

from __future__ import annotations

import random
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from autoexec.backoff import backoff_delay


def lowest() -> float:
    return 0.0


def highest() -> float:
    return 1.0


@given(
    base=st.floats(min_value=0, max_value=1e6),
    attempt=st.integers(min_value=0, max_value=5000),
    cap=st.floats(min_value=0, max_value=1e6),
    draw=st.floats(min_value=0, max_value=1),
)
def test_the_delay_lies_between_half_and_all_of_the_capped_doubled_wait(
    base: float, attempt: int, cap: float, draw: float
) -> None:
    doubled = float(min(Fraction(cap), Fraction(base) * 2**attempt))
    delay = backoff_delay(base, attempt, cap, lambda: draw)
    assert doubled / 2 <= delay <= doubled <= cap


def test_the_delay_doubles_with_each_attempt_until_the_cap() -> None:
    delays = [backoff_delay(0.5, attempt, 60, lambda: 0.5) for attempt in range(9)]
    assert delays == [0.375, 0.75, 1.5, 3, 6, 12, 24, 45, 45]  # 3/4 of 0.5 * 2**n, then of 60


def test_the_bounds_are_reached_at_the_ends_of_the_jitter() -> None:
    assert [backoff_delay(2, attempt, 300, lowest) for attempt in range(3)] == [1, 2, 4]
    assert [backoff_delay(2, attempt, 300, highest) for attempt in range(3)] == [2, 4, 8]


def test_a_late_attempt_waits_at_most_the_cap_and_a_zero_base_not_at_all() -> None:
    assert backoff_delay(2, 10_000, 300, highest) == 300  # no overflow past 1023 doublings
    assert backoff_delay(2, 10_000, 300, lowest) == 150
    assert backoff_delay(0, 10_000, 300, highest) == 0


def test_an_injected_rng_gives_the_same_delays_and_the_default_one_spreads_them() -> None:
    def delays(rng: random.Random) -> list[float]:
        return [backoff_delay(1, attempt, 60, rng.random) for attempt in range(8)]

    assert delays(random.Random(7)) == delays(random.Random(7))
    spread = {backoff_delay(1, 3, 60) for _ in range(20)}
    assert len(spread) > 1 and all(4 <= delay <= 8 for delay in spread)
