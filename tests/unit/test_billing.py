"""Block costs without services (SPEC §6): which cost applies to a node's inputs, what a run
used, the ``credit_budget`` check of a submission, and the prices of the built-in blocks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from autoexec.billing.charges import applicable_cost, dispatch_amount, usage_amount
from autoexec.blocks.base import Block, BlockCost, BlockInput, BlockOutput, CostType, RunContext
from autoexec.blocks.registry import get_registry
from autoexec.engine.submission import check_credit_budget
from autoexec.errors import InputValidationError


class TieredInput(BlockInput):
    tier: str = "basic"
    model: str = "small"


class TieredOutput(BlockOutput):
    result: str


class TieredBlock(Block[TieredInput]):
    id = "tiered"
    name = "Tiered"
    Input = TieredInput
    Output = TieredOutput
    costs = (
        BlockCost(10, {"tier": "premium", "model": "large"}),
        BlockCost(5, {"tier": "premium"}),
        BlockCost(7, {"model": "large"}),
        BlockCost(1),
    )

    def run(self, data: TieredInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        yield "result", data.tier


class OnlyPremiumBlock(TieredBlock):
    id = "only_premium"
    costs = (BlockCost(5, {"tier": "premium"}),)


# --- applicable_cost ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("inputs", "amount"),
    [
        ({"tier": "premium", "model": "large"}, 10),
        ({"tier": "premium", "model": "small"}, 5),
        ({"tier": "basic", "model": "large"}, 7),
        ({"tier": "basic", "model": "small"}, 1),
    ],
)
def test_the_first_cost_whose_filter_matches_applies(inputs: dict[str, Any], amount: int) -> None:
    cost = applicable_cost(TieredBlock, inputs)
    assert cost is not None
    assert cost.amount == amount


def test_a_later_matching_cost_does_not_replace_the_first() -> None:
    # {"tier": "premium"} matches the 2nd, 3rd is not reached although "model" would match it.
    cost = applicable_cost(TieredBlock, {"tier": "premium", "model": "medium"})
    assert cost == BlockCost(5, {"tier": "premium"})


def test_a_filter_pin_missing_from_the_inputs_does_not_match() -> None:
    assert applicable_cost(TieredBlock, {"model": "large"}) == BlockCost(7, {"model": "large"})
    assert applicable_cost(TieredBlock, {}) == BlockCost(1)
    assert applicable_cost(OnlyPremiumBlock, {}) is None


def test_a_filter_value_must_be_equal_to_match() -> None:
    assert applicable_cost(OnlyPremiumBlock, {"tier": "Premium"}) is None
    assert applicable_cost(OnlyPremiumBlock, {"tier": None}) is None


def test_a_block_without_costs_has_none() -> None:
    assert applicable_cost(get_registry().get("agent_input"), {"name": "x"}) is None


def test_only_a_run_cost_is_charged_before_dispatch() -> None:
    assert dispatch_amount(BlockCost(4)) == 4
    assert dispatch_amount(BlockCost(4, type=CostType.BYTE)) == 0
    assert dispatch_amount(BlockCost(4, type=CostType.SECOND)) == 0
    assert dispatch_amount(None) == 0


# --- usage_amount -------------------------------------------------------------------------------


@pytest.mark.parametrize(("output_size", "amount"), [(0, 0), (1, 2), (40, 80)])
def test_a_byte_cost_is_per_output_byte(output_size: int, amount: int) -> None:
    cost = BlockCost(2, type=CostType.BYTE)
    assert usage_amount(cost, {"output_size": output_size, "walltime": 9.5}) == amount


@pytest.mark.parametrize(
    ("walltime", "amount"),
    [(0.0, 0), (0.001, 3), (0.999, 3), (1.0, 3), (1.0001, 6), (2.5, 9), (3.0, 9)],
)
def test_a_second_cost_counts_every_second_begun(walltime: float, amount: int) -> None:
    cost = BlockCost(3, type=CostType.SECOND)
    assert usage_amount(cost, {"walltime": walltime, "output_size": 100}) == amount


def test_a_run_cost_or_no_cost_uses_nothing_at_the_end() -> None:
    stats = {"walltime": 2.0, "output_size": 10}
    assert usage_amount(BlockCost(5), stats) == 0
    assert usage_amount(None, stats) == 0


def test_usage_without_the_stat_is_zero() -> None:
    assert usage_amount(BlockCost(2, type=CostType.BYTE), {}) == 0
    assert usage_amount(BlockCost(2, type=CostType.SECOND), {}) == 0


# --- check_credit_budget ------------------------------------------------------------------------


@pytest.mark.parametrize("budget", [None, 0, 1, 10**12])
def test_a_budget_is_none_or_a_whole_number_of_zero_or_more(budget: int | None) -> None:
    check_credit_budget(budget)


@pytest.mark.parametrize("budget", [-1, 1.5, 2.0, "5", True, False, [5]])
def test_any_other_budget_is_refused(budget: object) -> None:
    with pytest.raises(InputValidationError) as refused:
        check_credit_budget(budget)
    assert str(refused.value) == (
        f"credit_budget must be a whole number of credits, 0 or more, got {budget!r}"
    )


# --- the built-in blocks' prices (docs/credits.md) ------------------------------------------------


@pytest.mark.parametrize(
    ("block_id", "inputs", "amount"),
    [
        ("calculator", {"operation": "power", "a": 2, "b": 3}, 3),
        ("calculator", {"operation": "add", "a": 2, "b": 3}, 1),
        ("fill_text_template", {"format": "{x}", "values": {"x": 1}}, 2),
        ("print", {"text": "hi"}, 1),
        ("agent_input", {"name": "x", "value": 1}, 0),
        ("agent_output", {"name": "x", "value": 1}, 0),
    ],
)
def test_built_in_run_costs(block_id: str, inputs: dict[str, Any], amount: int) -> None:
    block = get_registry().get(block_id)
    assert dispatch_amount(applicable_cost(block, inputs)) == amount
    assert usage_amount(applicable_cost(block, inputs), {"walltime": 5.0, "output_size": 9}) == 0
