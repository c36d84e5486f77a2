"""``human_review`` (SPEC §8.2): a person approves or rejects a value before the run goes on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import Field

from autoexec.blocks.base import AwaitReview, Block, BlockInput, BlockOutput, RunContext, Yield


class HumanReviewInput(BlockInput):
    data: Any = Field(description="The value to review.")
    message: str = Field(default="", description="What the reviewer is asked.")


class HumanReviewOutput(BlockOutput):
    approved_data: Any = Field(
        default=None, description="The approved value (as changed by the reviewer, if changed)."
    )
    rejected: str = Field(default="", description="Why the reviewer rejected the value.")


class HumanReviewBlock(Block[HumanReviewInput]):
    """Suspends its node in REVIEW, holding no worker, until the review is decided with
    ``autoexec review approve|reject`` or ``api.approve`` / ``api.reject``."""

    id = "human_review"
    name = "Human review"
    description = "Waits for a person to approve (and maybe change) or reject a value."
    Input = HumanReviewInput
    Output = HumanReviewOutput

    def run(self, data: HumanReviewInput, ctx: RunContext) -> Iterator[Yield]:
        yield AwaitReview(data=data.data, message=data.message)
