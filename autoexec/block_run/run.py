"""One run of a block on one set of inputs, as the node task, a fan-out element and the
reference interpreter all run it: its outputs in order under its time limit, each one checked
(JSON, size), its log context, and whether what ended it was raised by the block's own code."""

from __future__ import annotations

import json
import logging
from collections.abc import Generator, Iterator, MutableMapping
from contextlib import closing, nullcontext
from typing import Any

from autoexec.block_run.failures import Ending, SupersededError, ending_of
from autoexec.block_run.iteration import iterate_block
from autoexec.blocks.base import Block, RunContext, Suspend, Yield
from autoexec.errors import ExecutionStoppedError
from autoexec.json_values import NOT_FINITE, holds_non_finite_number, json_problem
from autoexec.logs import context_prefix
from autoexec.timeouts import Clock, alarm

log = logging.getLogger("autoexec.node")


class NodeLogAdapter(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every line with user, graph, graph execution, node, node execution, block."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = self.extra or {}
        kwargs.setdefault("extra", {}).update(extra)
        return f"{context_prefix(extra)}{msg}", kwargs


def run_logger(
    user: str, graph: str, graph_exec: str, node: str, node_exec: int, block: str
) -> NodeLogAdapter:
    """The logger of one block run, its lines prefixed with the run's context."""
    context = {
        "user": user,
        "graph": graph,
        "graph_exec": graph_exec,
        "node": node,
        "node_exec": node_exec,
        "block": block,
    }
    return NodeLogAdapter(log, context)


def checked_output_size(pin: str, value: Any, limit: int | None) -> int:
    """The size of ``value`` as JSON; a ValueError if it is not JSON (a number that is not
    finite, anywhere inside it, included) or over ``limit`` bytes (None: no limit)."""
    try:
        size = len(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError):
        raise ValueError(
            f"output {pin!r} is not JSON-serializable: {json_problem(value)}"
        ) from None
    if limit is not None and size > limit:
        raise ValueError(
            f"output {pin!r} is {size} bytes, over the limit of {limit} (AUTOEXEC_MAX_OUTPUT_BYTES)"
        )
    return size


class OutputCheck:
    """Each output of a run checked as JSON (finite numbers only) under ``limit`` bytes (None:
    no limit), and their sizes summed up (the ``output_size`` stat)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.total = 0

    def __call__(self, pin: str, value: Any) -> None:
        self.total += checked_output_size(pin, value, self.limit)


class FiniteNumbersCheck(OutputCheck):
    """The reference interpreter's check: it passes Python objects from node to node (an
    object pin's attributes), so only JSON's rule on numbers holds, with no size limit."""

    def __init__(self) -> None:
        super().__init__(limit=None)

    def __call__(self, pin: str, value: Any) -> None:
        if holds_non_finite_number(value):
            raise ValueError(f"output {pin!r} is not JSON-serializable: {NOT_FINITE}")


class RunningBlock:
    """``block`` run on ``inputs``: with a ``clock``, stopped past its limit or when another
    thread interrupts it; each output checked by ``output_check`` (by default, as the
    reference interpreter checks them: numbers finite)."""

    def __init__(
        self,
        block: type[Block[Any]],
        inputs: dict[str, Any],
        context: RunContext,
        clock: Clock | None = None,
        output_check: OutputCheck | None = None,
    ) -> None:
        self.block, self.inputs, self.context, self.clock = block, inputs, context, clock
        self.output_check = output_check or FiniteNumbersCheck()
        self.raised: Exception | None = None  # what the block's own code raised

    def outputs(self) -> Generator[Yield, None, None]:
        """Each checked ``(pin, value)`` the block yields, in order, and last the ``Suspend``
        that ends it, if it suspends. Close it (``contextlib.closing``) when done with it: the
        time limit's alarm stays set until then."""
        pairs = iterate_block(self.block, self.inputs, self.context, self.clock)
        with alarm(self.clock) if self.clock is not None else nullcontext(), closing(pairs):
            for item in self._from_block(pairs):
                if isinstance(item, Suspend):
                    yield item
                    return
                if self.clock is not None:
                    self.clock.check()  # an output yielded past the limit, or a stop, is not kept
                self.output_check(*item)
                yield item

    def ending_of(self, exc: Exception, retries_done: int | None) -> Ending:
        """How the run ends that raised ``exc`` (see ``failures.ending_of``)."""
        return ending_of(exc, self.block, exc is self.raised, retries_done)

    def _from_block(self, pairs: Iterator[Yield]) -> Iterator[Yield]:
        """``pairs``, noting what the block's own code raised: a database or Redis error of the
        block's own connections is the block's failure, not the engine's to retry."""
        while True:
            try:
                pair = next(pairs)
            except StopIteration:
                return
            except (SupersededError, ExecutionStoppedError):
                raise  # a stop the engine asked for, not a failure
            except Exception as exc:
                self.raised = exc
                raise
            yield pair
