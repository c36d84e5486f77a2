"""One element of a fan-out (SPEC §8.3): the node's block run on the node execution's inputs,
read from the database, with the element in place of the list; run like a node (the same
runner, the node's time limit, stopped when its run is cancelled) but recording nothing: what
it yields is returned to the chord, whose callback the node yields from."""

from __future__ import annotations

import json
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from autoexec.blocks.base import Block, RunContext, Suspend
from autoexec.engine.context import Engine
from autoexec.engine.node_execution import (
    DATABASE_EVERY,
    WATCH_INTERVAL_SECONDS,
    NodeLogAdapter,
    log,
)
from autoexec.engine.output_buffer import timer
from autoexec.errors import ExecutionStoppedError
from autoexec.fan_out_results import elements_of
from autoexec.node_runner import error_message, iterate_block
from autoexec.statuses import ExecutionStatus
from autoexec.store import executions as repo
from autoexec.store.graphs import load_run_graph
from autoexec.timeouts import Clock, alarm, time_limit

S = ExecutionStatus
NOT_WAITING = "not run: its node no longer waits (its run was cancelled or stopped)"


@dataclass(frozen=True)
class Element:
    """What one element run needs, read from the database."""

    index: int
    block: type[Block[Any]]
    inputs: dict[str, Any]
    context: RunContext
    clock: Clock


def run_element(engine: Engine, node_exec_id: int, index: int) -> dict[str, Any]:
    """Run element ``index`` of a WAITING fan-out node; its result for the chord's callback:
    ``index``, ``outputs`` (``[pin, value]`` pairs in yield order) and ``error`` (or None)."""
    element = _load(engine, node_exec_id, index)
    if isinstance(element, str):
        return {"index": index, "outputs": [], "error": element}
    watch = _StopWatch(engine, element)
    watch.start()
    try:
        return {"index": index, "outputs": _outputs(engine, element), "error": None}
    except ExecutionStoppedError:
        return {"index": index, "outputs": [], "error": NOT_WAITING}
    except Exception as exc:  # the block failed (or a timeout): the element fails
        return {"index": index, "outputs": [], "error": error_message(exc)}
    finally:
        watch.finished = True


def _load(engine: Engine, node_exec_id: int, index: int) -> Element | str:
    """The element to run, or why it is not run."""
    with engine.db.session() as session:
        view = repo.claim_view(session, node_exec_id)
        if view.status is not S.WAITING or view.cancel_requested_at is not None:
            return NOT_WAITING
        graph = load_run_graph(session, view.graph_exec_id, view.graph_id, view.graph_version)
    if view.block_id not in engine.registry:
        return f"block {view.block_id!r} is not registered on this worker"
    node = graph.node(view.node_id)
    block = engine.registry.get(view.block_id)
    pin = str(node.fan_out)
    inputs = dict(view.input_data or {})
    inputs[pin] = elements_of(inputs, pin)[index]
    name = f"{view.node_id}[{index}]"
    logger = NodeLogAdapter(
        log,
        {
            "user": view.user_id,
            "graph": view.graph_id,
            "graph_exec": view.graph_exec_id,
            "node": name,
            "node_exec": node_exec_id,
            "block": view.block_id,
        },
    )
    clock = Clock(name, time_limit(node, block, engine.settings.node_timeout_seconds))
    context = RunContext(
        user_id=view.user_id,
        graph_id=view.graph_id,
        graph_version=view.graph_version,
        graph_exec_id=view.graph_exec_id,
        node_id=view.node_id,
        node_exec_id=str(node_exec_id),
        block_id=view.block_id,
        logger=logger,
        is_cancelled=lambda: clock.pending is not None,
    )
    return Element(index, block, inputs, context, clock)


def _outputs(engine: Engine, element: Element) -> list[list[Any]]:
    clock, limit = element.clock, engine.settings.max_output_bytes
    outputs: list[list[Any]] = []
    pairs = iterate_block(element.block, element.inputs, element.context, clock)
    with alarm(clock), closing(pairs):
        for item in pairs:
            if isinstance(item, Suspend):
                raise ValueError("a fan-out element cannot suspend")
            clock.check()  # an output yielded past the limit, or after a stop, is not kept
            pin, value = item
            _check_size(pin, value, limit)
            outputs.append([pin, value])
    return outputs


def _check_size(pin: str, value: Any, limit: int) -> None:
    try:
        size = len(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"output {pin!r} is not JSON-serializable: {exc}") from None
    if size > limit:
        raise ValueError(
            f"output {pin!r} is {size} bytes, over the limit of {limit} (AUTOEXEC_MAX_OUTPUT_BYTES)"
        )


class _StopWatch:
    """Stops the element when its run is cancelled: the run's stop flag (Redis) at each
    watch, the database (the truth) every ``DATABASE_EVERY`` watches."""

    def __init__(self, engine: Engine, element: Element) -> None:
        self.engine, self.element = engine, element
        self.finished = False
        self.watches = 0

    def start(self) -> None:
        timer().schedule(self.watch, WATCH_INTERVAL_SECONDS)

    def watch(self) -> None:
        if self.finished:
            return
        try:
            stopped = self._stopped()
        except Exception:
            self.element.context.logger.warning("could not check whether to stop", exc_info=True)
            stopped = False
        if stopped:
            self.element.clock.interrupt(ExecutionStoppedError())
        else:
            self.start()

    def _stopped(self) -> bool:
        self.watches += 1
        graph_exec_id = self.element.context.graph_exec_id
        if self.engine.coordinator.stop_requested(graph_exec_id):
            return True
        if self.watches % DATABASE_EVERY:
            return False
        node_exec_id = int(self.element.context.node_exec_id)
        with self.engine.db.session() as session:
            view = repo.claim_view(session, node_exec_id)
        return view.status is not S.WAITING or view.cancel_requested_at is not None
