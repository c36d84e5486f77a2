"""The ``Block`` base class: a small unit of work with typed input and output pins.

A block declares a stable ``id``, a human ``name`` and ``description``, an ``Input`` and an
``Output`` schema (pydantic models whose fields are the pins) and a ``run`` method that is a sync
or async generator of ``(output_pin, value)`` pairs.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter

ERROR_PIN = "error"


class BlockInput(BaseModel):
    """Base of every block's ``Input`` schema; each field is an input pin."""

    model_config = ConfigDict(extra="ignore", arbitrary_types_allowed=True)


class BlockOutput(BaseModel):
    """Base of every block's ``Output`` schema; each field is an output pin.

    Every block also has the ``error`` pin. A schema with ``extra="allow"`` accepts any pin name
    (for blocks whose outputs are only known at run time, such as a sub-graph).
    """

    model_config = ConfigDict(extra="forbid")

    error: str = ""


class CostType(enum.StrEnum):
    RUN = "run"
    BYTE = "byte"
    SECOND = "second"


@dataclass(frozen=True)
class BlockCost:
    """A price in credits applied when ``filter`` matches the node execution's inputs."""

    amount: int
    filter: dict[str, Any] = field(default_factory=dict)
    type: CostType = CostType.RUN


@dataclass(frozen=True)
class RunContext:
    """Who and what a block run belongs to; passed explicitly to ``Block.run``."""

    user_id: str
    graph_id: str
    graph_version: int
    graph_exec_id: str
    node_id: str
    node_exec_id: str
    block_id: str
    logger: logging.LoggerAdapter[logging.Logger]
    is_cancelled: Callable[[], bool] = lambda: False


@dataclass(frozen=True)
class Suspend:
    """Yielded by a block, instead of an output, to end its run suspended: its node execution
    frees the worker slot and waits; the engine resumes it from the database later, writing
    the outputs the resumption gives, as if the block had yielded them. Nothing the block
    yields after it runs. Each subclass is handled by a suspension kind
    (``autoexec.engine.suspensions``): ``AwaitReview`` and ``AwaitChild`` are built in."""


@dataclass(frozen=True)
class AwaitReview(Suspend):
    """Suspend the node in REVIEW until a person approves or rejects ``data`` (SPEC §8.2):
    approved, the node yields ``approved_data``; rejected, it yields ``rejected`` (the reason)."""

    data: Any
    message: str = ""


@dataclass(frozen=True)
class AwaitChild(Suspend):
    """Suspend the node in WAITING while ``graph_id`` runs as a child execution (SPEC §8.1):
    the node then yields the child's graph outputs, or fails with the child's error."""

    graph_id: str
    graph_version: int | None = None  # None: the latest version
    inputs: dict[str, Any] = field(default_factory=dict)


Yield = tuple[str, Any] | Suspend
BlockRun = Iterator[Yield] | AsyncIterator[Yield]
InputT = TypeVar("InputT", bound=BlockInput)


class TransientError(Exception):
    """Raised by a block for a failure worth trying again (a rate limit, a remote service
    briefly down): while the block's ``retries`` last, the node runs again after a backoff."""


class Block(Generic[InputT]):
    """Base class of all blocks. Subclasses set the class attributes and implement ``run``."""

    id: ClassVar[str]
    name: ClassVar[str]
    description: ClassVar[str] = ""
    Input: ClassVar[type[BlockInput]]
    Output: ClassVar[type[BlockOutput]]
    costs: ClassVar[tuple[BlockCost, ...]] = ()
    static_output: ClassVar[bool] = False
    disabled: ClassVar[bool] = False
    timeout_seconds: ClassVar[float | None] = None
    # Runs again after a TransientError (or one of ``transient_errors``) this many times,
    # waiting ``retry_backoff_seconds``, doubled at each retry (at most a minute); the
    # actual wait is a random half to all of that (jitter).
    retries: ClassVar[int] = 0
    retry_backoff_seconds: ClassVar[float] = 1.0
    transient_errors: ClassVar[tuple[type[Exception], ...]] = ()

    def run(self, data: InputT, ctx: RunContext) -> BlockRun:
        raise NotImplementedError

    @classmethod
    def is_transient(cls, exc: BaseException) -> bool:
        return isinstance(exc, (TransientError, *cls.transient_errors))

    @classmethod
    def input_pins(cls) -> frozenset[str]:
        return frozenset(cls.Input.model_fields)

    @classmethod
    def required_inputs(cls) -> frozenset[str]:
        return frozenset(n for n, f in cls.Input.model_fields.items() if f.is_required())

    @classmethod
    def output_pins(cls) -> frozenset[str]:
        return frozenset(cls.Output.model_fields)

    @classmethod
    def has_dynamic_outputs(cls) -> bool:
        return cls.Output.model_config.get("extra") == "allow"

    @classmethod
    def has_output_pin(cls, pin: str) -> bool:
        return cls.has_dynamic_outputs() or pin in cls.Output.model_fields

    @classmethod
    def validate_output(cls, pin: str, value: Any) -> Any:
        """Check one yielded value against the ``Output`` schema; return the coerced value."""
        if pin not in cls.Output.model_fields:
            if cls.has_dynamic_outputs():
                return value
            raise ValueError(f"block {cls.id!r} yielded undeclared output pin {pin!r}")
        return _pin_adapter(cls.Output, pin).validate_python(value)

    @classmethod
    def validate_input(cls, pin: str, value: Any) -> Any:
        """Check one value of input ``pin`` against the ``Input`` schema's field for it; return
        the coerced value (``pydantic.ValidationError`` if it does not validate)."""
        return _pin_adapter(cls.Input, pin).validate_python(value)

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """A JSON-friendly summary of the block: id, name, description and pins."""
        return {
            "id": cls.id,
            "name": cls.name,
            "description": cls.description,
            "inputs": sorted(cls.input_pins()),
            "required_inputs": sorted(cls.required_inputs()),
            "outputs": sorted(cls.output_pins()),
            "static_output": cls.static_output,
            "disabled": cls.disabled,
        }


@cache
def _pin_adapter(schema: type[BaseModel], pin: str) -> TypeAdapter[Any]:
    return TypeAdapter(schema.model_fields[pin].rebuild_annotation())
