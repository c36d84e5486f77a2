"""The graph's own inputs and outputs: ``agent_input`` and ``agent_output`` (SPEC §13)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import Field

from autoexec.blocks.base import Block, BlockInput, BlockOutput, RunContext


class AgentInputInput(BlockInput):
    name: str = Field(description="The name of the graph input.")
    value: Any = Field(default=None, description="The value given when the graph was run.")
    default: Any = Field(default=None, description="Used when no value was given.")
    description: str | None = Field(default=None, description="What this input is for.")


class AgentInputOutput(BlockOutput):
    result: Any = Field(description="The input's value, or its default.")


class AgentInputBlock(Block[AgentInputInput]):
    """Entry point of a graph: yields the submitted value, else the default, else nothing."""

    id = "agent_input"
    name = "Agent input"
    description = "Takes a value given when the graph is run and passes it on to the next blocks."
    Input = AgentInputInput
    Output = AgentInputOutput

    def run(self, data: AgentInputInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        value = data.value if data.value is not None else data.default
        if value is not None:
            yield "result", value


class AgentOutputInput(BlockInput):
    name: str = Field(description="The name under which the graph reports this output.")
    value: Any = Field(description="The value to report.")
    format: str | None = Field(
        default=None, description='A template for the value, such as "sum={value}".'
    )


class AgentOutputOutput(BlockOutput):
    output: Any = Field(description="The value, formatted when a format was given.")
    name: str = Field(description="The output's name.")


class AgentOutputBlock(Block[AgentOutputInput]):
    """Exit point of a graph: its yields become the graph execution's outputs (SPEC §3.7)."""

    id = "agent_output"
    name = "Agent output"
    description = "Reports a value as a result of the graph, optionally formatted as text."
    Input = AgentOutputInput
    Output = AgentOutputOutput

    def run(self, data: AgentOutputInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        yield "output", format_value(data.format, data.value)
        yield "name", data.name


def format_value(template: str | None, value: Any) -> Any:
    """``value`` put into ``template`` (a ``{value}`` template), or unchanged without one."""
    if template is None:
        return value
    try:
        return template.format(value=value)
    except (KeyError, IndexError, AttributeError) as exc:
        raise ValueError(f"format {template!r} is not a valid {{value}} template: {exc!r}") from exc
