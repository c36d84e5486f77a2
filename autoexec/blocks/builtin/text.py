"""Text blocks: ``fill_text_template`` and ``print`` (SPEC §13)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import Field

from autoexec.blocks.base import Block, BlockCost, BlockInput, BlockOutput, RunContext


class FillTextTemplateInput(BlockInput):
    format: str = Field(description="Text with {name} placeholders, such as 'Hello, {who}!'.")
    values: dict[str, Any] = Field(description="The value of each placeholder, by name.")


class FillTextTemplateOutput(BlockOutput):
    output: str = Field(description="The text with every placeholder filled in.")


class FillTextTemplateBlock(Block[FillTextTemplateInput]):
    """Fills ``{name}`` placeholders (``str.format`` syntax) from ``values``."""

    id = "fill_text_template"
    name = "Fill text template"
    description = "Builds a text by filling the {name} placeholders of a template with values."
    Input = FillTextTemplateInput
    Output = FillTextTemplateOutput
    costs = (BlockCost(2),)  # charged only with metering on (AUTOEXEC_BILLING_ENABLED)

    def run(self, data: FillTextTemplateInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        yield "output", fill_template(data.format, data.values)


def fill_template(template: str, values: Mapping[str, Any]) -> str:
    """``template`` filled from ``values``; a placeholder without a value is a ``ValueError``."""
    try:
        return template.format_map(values)
    except KeyError as exc:
        raise ValueError(f"placeholder {exc.args[0]!r} has no value") from None
    except (IndexError, AttributeError, TypeError) as exc:
        raise ValueError(f"cannot fill template {template!r}: {exc}") from exc


class PrintInput(BlockInput):
    text: Any = Field(description="What to write to the log.")


class PrintOutput(BlockOutput):
    output: Any = Field(description="The text, unchanged.")


class PrintBlock(Block[PrintInput]):
    """Logs ``text`` at info level on the node's logger and passes it on."""

    id = "print"
    name = "Print"
    description = "Writes a value to the execution log and passes it on unchanged."
    Input = PrintInput
    Output = PrintOutput
    costs = (BlockCost(1),)  # charged only with metering on (AUTOEXEC_BILLING_ENABLED)

    def run(self, data: PrintInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        ctx.logger.info("%s", data.text)
        yield "output", data.text
