"""Blocks that shape the flow of data: ``store_value`` and ``wait`` (SPEC §13)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

from pydantic import Field

from autoexec.blocks.base import Block, BlockInput, BlockOutput, RunContext


class StoreValueInput(BlockInput):
    input: Any = Field(description="The value that triggers the block.")
    data: Any = Field(default=None, description="The value to send; the input if not given.")


class StoreValueOutput(BlockOutput):
    output: Any = Field(description="The stored value.")


class StoreValueBlock(Block[StoreValueInput]):
    """Yields ``data`` if given, else ``input``. Its output is static (SPEC §3.4): later nodes
    may reuse the last value without it running again."""

    id = "store_value"
    name = "Store value"
    description = "Keeps a value so that later blocks can use it again and again."
    Input = StoreValueInput
    Output = StoreValueOutput
    static_output = True

    def run(self, data: StoreValueInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        yield "output", data.input if data.data is None else data.data


class WaitInput(BlockInput):
    seconds: float = Field(ge=0, allow_inf_nan=False, description="How long to wait, in seconds.")
    data: Any = Field(default=None, description="The value to send after waiting.")


class WaitOutput(BlockOutput):
    output: Any = Field(description="The data, after the wait.")


class WaitBlock(Block[WaitInput]):
    """Sleeps with ``asyncio.sleep`` (so cancelling the task interrupts it), then yields data."""

    id = "wait"
    name = "Wait"
    description = "Waits for a number of seconds, then passes a value on."
    Input = WaitInput
    Output = WaitOutput

    async def run(self, data: WaitInput, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        await asyncio.sleep(data.seconds)
        yield "output", data.data
