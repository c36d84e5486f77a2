"""The built-in blocks of SPEC §13, one module per concept.

``autoexec.blocks.registry`` registers every block named in ``__all__``.
"""

from autoexec.blocks.builtin.arithmetic import CalculatorBlock
from autoexec.blocks.builtin.containers import (
    CreateDictBlock,
    CreateListBlock,
    FindInDictBlock,
    StepThroughItemsBlock,
)
from autoexec.blocks.builtin.flow import StoreValueBlock, WaitBlock
from autoexec.blocks.builtin.graph_io import AgentInputBlock, AgentOutputBlock
from autoexec.blocks.builtin.logic import ConditionBlock
from autoexec.blocks.builtin.review import HumanReviewBlock
from autoexec.blocks.builtin.subgraph import AgentExecutorBlock
from autoexec.blocks.builtin.text import FillTextTemplateBlock, PrintBlock

__all__ = [
    "AgentExecutorBlock",
    "AgentInputBlock",
    "AgentOutputBlock",
    "CalculatorBlock",
    "ConditionBlock",
    "CreateDictBlock",
    "CreateListBlock",
    "FillTextTemplateBlock",
    "FindInDictBlock",
    "HumanReviewBlock",
    "PrintBlock",
    "StepThroughItemsBlock",
    "StoreValueBlock",
    "WaitBlock",
]
