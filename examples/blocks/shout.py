"""A custom block: ``shout`` upper-cases a text and repeats it.

Use it with ``AUTOEXEC_BLOCK_MODULES=shout`` and this directory on ``PYTHONPATH``
(see examples/shout.json and the README).
"""

from collections.abc import Iterator
from typing import Any

from pydantic import Field

from autoexec.blocks.base import Block, BlockInput, BlockOutput, RunContext


class ShoutInput(BlockInput):
    text: str = Field(description="What to shout.")
    times: int = Field(default=1, ge=1, description="How many times.")


class ShoutOutput(BlockOutput):
    output: str = Field(description="The text, upper-cased, once per time.")


class ShoutBlock(Block[ShoutInput]):
    id = "shout"
    name = "Shout"
    description = "Upper-cases a text and yields it once per time."
    Input = ShoutInput
    Output = ShoutOutput

    def run(self, data: ShoutInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        if not data.text.strip():
            raise ValueError("there is nothing to shout: give a non-blank text")
        for _ in range(data.times):
            yield "output", data.text.upper() + "!"
