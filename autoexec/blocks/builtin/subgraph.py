"""``agent_executor`` (SPEC §8.1): run another graph as a child execution."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import ConfigDict, Field

from autoexec.blocks.base import AwaitChild, Block, BlockInput, BlockOutput, RunContext, Yield


class AgentExecutorInput(BlockInput):
    graph_id: str = Field(
        description="The graph to run, one of the same user's: its id, or its name (resolved "
        "when the child starts)."
    )
    graph_version: int | None = Field(default=None, description="Its version; default latest.")
    inputs: dict[str, Any] = Field(default_factory=dict, description="Its graph inputs by name.")


class AgentExecutorOutput(BlockOutput):
    """One pin per output name of the child graph, known only when it runs."""

    model_config = ConfigDict(extra="allow")


class AgentExecutorBlock(Block[AgentExecutorInput]):
    """Suspends its node in WAITING, holding no worker, while the child execution runs; then
    yields every value of each of the child's outputs on the pin of that output's name (name
    by name, each name's values in order), or fails with the child's error."""

    id = "agent_executor"
    name = "Agent executor"
    description = "Runs another graph as a child execution and yields its outputs."
    Input = AgentExecutorInput
    Output = AgentExecutorOutput

    def run(self, data: AgentExecutorInput, ctx: RunContext) -> Iterator[Yield]:
        yield AwaitChild(data.graph_id, data.graph_version, dict(data.inputs))
