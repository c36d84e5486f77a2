"""Fan-out (SPEC §8.3): a node with ``"fan_out": "<pin>"`` runs its block once per element of
its list input ``<pin>``, the element taking the place of the list.

The node task runs no block: this kind launches the node instead, which ends WAITING
(``AwaitFanOut``) and, after that commit, publishes one Celery chord: an element task per
element (``run_element``) and a callback (``gather``) that gathers each output pin into a
list in element order; the node then yields each list once, through ``resume_node``. Every
task id derives from the node execution id (and the element's index): a re-delivered node
task publishes the chord again harmlessly, since the result backend records each element of a
chord once and calls its callback once. An empty list yields an empty list on each output pin
the block declares, with no chord at all.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from autoexec.block_run.failures import Ending, error_message
from autoexec.block_run.run import OutputCheck, RunningBlock, run_logger
from autoexec.block_run.watch import StopWatch, database_due
from autoexec.blocks.base import ERROR_PIN, Block, RunContext, Suspend, Yield
from autoexec.coordination import CoordinationError
from autoexec.dataflow import elements_of
from autoexec.engine.context import Engine
from autoexec.engine.suspensions.registry import Kind, Launch, ReferenceNode
from autoexec.engine.suspensions.resume import Resumption, resume_node
from autoexec.errors import ExecutionStoppedError, InvalidTransitionError
from autoexec.graph import Node
from autoexec.hooks import NodeRef
from autoexec.statuses import ExecutionStatus
from autoexec.store import executions as repo
from autoexec.store import suspended
from autoexec.store.fan_out_elements import (
    ElementResult,
    record_element,
    recorded_count,
    recorded_element,
    recorded_elements,
)
from autoexec.store.graphs import load_run_graph
from autoexec.store.transaction import Transaction
from autoexec.timeouts import Clock, time_limit

S = ExecutionStatus
log = logging.getLogger(__name__)

# The node execution's stats entry that marks it as fanned out: {"pin": ..., "elements": n}.
STATS_KEY = "fan_out"
NOT_WAITING = "not run: its node no longer waits (its run was cancelled or stopped)"
# Result backends that keep results in one process's memory: a chord's parts never reach
# its callback there (seen on the embedded stack, whose worker is a thread of the process).
IN_PROCESS_BACKENDS = ("cache+memory://",)
IN_PROCESS_BROKERS = ("memory://", "autoexec-memory://")


@dataclass(frozen=True)
class AwaitFanOut(Suspend):
    """Set by this kind, never a block, on a fan-out node: it waits in WAITING while its block
    runs once per element of its ``pin`` input (``elements`` runs)."""

    pin: str
    elements: int


class FanOutElementError(ValueError):
    """An element of a fan-out node failed: the node fails naming the element's index."""


class FanOutKind(Kind[AwaitFanOut]):
    suspends = AwaitFanOut
    status = ExecutionStatus.WAITING
    meters_run = False  # its elements are what ran, each charged when the node was dispatched

    def launch(self, node: Node) -> Launch | None:
        return None if node.fan_out is None else functools.partial(_launch, node.fan_out)

    def stats(self, suspension: AwaitFanOut) -> dict[str, Any]:
        return {STATS_KEY: {"pin": suspension.pin, "elements": suspension.elements}}

    def after_commit(self, engine: Engine, node: NodeRef, suspension: AwaitFanOut) -> None:
        engine.dispatcher.fan_out(node.node_exec_id, node.graph_exec_id, suspension.elements)

    def send_again(self, engine: Engine, node_exec_id: int) -> None:
        if not gather_if_complete(engine, node_exec_id):
            publish_again(engine, node_exec_id)

    def repair(self, engine: Engine, node_exec_id: int) -> bool:
        return gather_if_complete(engine, node_exec_id)

    def task_ids(self, session: Transaction, graph_exec_id: str) -> list[str]:
        return element_task_ids(session, graph_exec_id)

    def in_reference(self, suspension: AwaitFanOut, node: ReferenceNode) -> list[tuple[str, Any]]:
        """Each element run in turn, as the chord runs them: the node yields each output pin
        gathered in element order, once."""
        results = []
        for index, element in enumerate(elements_of(node.inputs, suspension.pin)):
            inputs = {**node.inputs, suspension.pin: element}
            try:
                results.append(_reference_element(node, inputs))
            except Exception as exc:
                raise FanOutElementError(failed_element_error(index, error_message(exc))) from exc
        return gathered(results)


KIND = FanOutKind()


def _launch(
    pin: str, block: type[Block[Any]], inputs: Mapping[str, Any], engine: Engine | None
) -> Iterator[Yield]:
    """The node's launch: it waits while a chord runs its elements, or over no element
    yields an empty list on each output pin at once."""
    elements = len(elements_of(inputs, pin))
    if engine is not None:
        check_chords_possible(engine)
    if elements == 0:
        yield from empty_outputs(block)
        return
    yield AwaitFanOut(pin, elements)


def check_chords_possible(engine: Engine) -> None:
    backend = engine.settings.effective_result_backend
    # An in-process backend gathers a chord only when every worker is in this process too.
    in_one_process = engine.settings.broker_url.startswith(IN_PROCESS_BROKERS)
    if backend.startswith(IN_PROCESS_BACKENDS) and not in_one_process:
        raise ValueError(
            f"fan_out needs a result backend the workers share (AUTOEXEC_RESULT_BACKEND, by "
            f"default the Redis of AUTOEXEC_REDIS_URL); {backend!r} lives in one "
            "process and cannot gather a chord of workers in other processes"
        )


def _reference_element(node: ReferenceNode, inputs: dict[str, Any]) -> list[tuple[str, Any]]:
    return element_outputs(RunningBlock(node.block, inputs, node.context))


def element_outputs(run: RunningBlock) -> list[tuple[str, Any]]:
    """The ``(pin, value)`` pairs an element's block yields, in order; an element cannot
    suspend."""
    outputs = []
    with closing(run.outputs()) as items:
        for item in items:
            if isinstance(item, Suspend):
                raise ValueError("a fan-out element cannot suspend")
            outputs.append(item)
    return outputs


def empty_outputs(block: type[Block[Any]]) -> list[tuple[str, list[Any]]]:
    """What a fan-out over no element yields: an empty list on each declared output pin."""
    return [(pin, []) for pin in block.Output.model_fields if pin != ERROR_PIN]


def gathered(elements: Sequence[Sequence[Sequence[Any]]]) -> list[tuple[str, list[Any]]]:
    """Each pin any element yielded, in the order pins first came, with one value per element
    in element order: the last value that element yielded on it, or None if it yielded none."""
    last = [{pin: value for pin, value in outputs} for outputs in elements]
    pins = list(dict.fromkeys(pin for outputs in elements for pin, _ in outputs))
    return [(pin, [values.get(pin) for values in last]) for pin in pins]


def failed_element_error(index: int, error: str) -> str:
    """The error of a fan-out node whose element ``index`` (the first that failed) failed."""
    return f"fan-out element {index} failed: {error}"


def chord_id(node_exec_id: int) -> str:
    return f"fan-out-{node_exec_id}"


def element_task_id(node_exec_id: int, index: int) -> str:
    return f"fan-out-{node_exec_id}-{index}"


def gather_task_id(node_exec_id: int) -> str:
    return f"fan-out-{node_exec_id}-gather"


def publish_again(engine: Engine, node_exec_id: int) -> None:
    """A re-delivered or retried node task found its node WAITING: if it is a fan-out, its
    chord may never have been published (a worker lost, or the broker down, between the
    commit and the publish), so it is published again; a copy of one that was is harmless."""
    with engine.db.session() as session:
        node = repo.node_state(session, node_exec_id)
        fanned, graph_exec_id = (node.stats or {}).get(STATS_KEY), node.graph_exec_id
        waiting = node.status is S.WAITING
    if waiting and fanned:
        log.info("publishing the fan-out of node execution %s again", node_exec_id)
        engine.dispatcher.fan_out(node_exec_id, graph_exec_id, int(fanned["elements"]))


def element_task_ids(session: Transaction, graph_exec_id: str) -> list[str]:
    """The element tasks of every fan-out node of the run, to revoke on a cancel."""
    waiting = suspended.stats_of_waiting_nodes(session, graph_exec_id)
    return [
        element_task_id(node_exec_id, index)
        for node_exec_id, stats in waiting
        if STATS_KEY in stats
        for index in range(int(stats[STATS_KEY]["elements"]))
    ]


def gather(
    engine: Engine, results: Sequence[Mapping[str, Any]], node_exec_id: int, graph_exec_id: str
) -> None:
    """The chord's callback: the node yields each output pin gathered over the elements, or
    fails with the first failed element's index. The results recorded in the database are the
    truth (the chord's own may be lost with Redis); a node that no longer waits (its run was
    cancelled, or its last element or a copy of this callback came first) is left as it is."""
    by_index = {int(result["index"]): dict(result) for result in results}
    with engine.db.session() as session:
        by_index.update({e.index: e.message() for e in recorded_elements(session, node_exec_id)})
    resumption = resumption_of(list(by_index.values()), engine.settings.max_output_bytes)
    try:
        resume_node(engine, graph_exec_id, node_exec_id, lambda session: resumption)
    except InvalidTransitionError as refused:
        log.info("fan-out of node execution %s not resumed: %s", node_exec_id, refused)


def gather_if_complete(engine: Engine, node_exec_id: int) -> bool:
    """Gather the fan-out if every element's result is recorded and the node still waits:
    after its last element, or for the reconciler when the chord's callback was lost."""
    with engine.db.session() as session:
        node = repo.node_state(session, node_exec_id)
        fanned = (node.stats or {}).get(STATS_KEY)
        recorded = recorded_count(session, node_exec_id)  # each element asks: a count, not rows
    if node.status is not S.WAITING or not fanned or recorded < int(fanned["elements"]):
        return False
    gather(engine, [], node_exec_id, node.graph_exec_id)
    return True


def resumption_of(results: Sequence[Mapping[str, Any]], max_bytes: int) -> Resumption:
    ordered = sorted(results, key=lambda result: int(result["index"]))
    failed = next((r for r in ordered if r.get("error") is not None), None)
    if failed is not None:
        return Resumption(error=failed_element_error(int(failed["index"]), str(failed["error"])))
    outputs = gathered([r["outputs"] for r in ordered])
    for pin, values in outputs:
        size = len(json.dumps(values))
        if size > max_bytes:
            return Resumption(
                error=f"fan-out output {pin!r} is {size} bytes, over the limit of {max_bytes} "
                "(AUTOEXEC_MAX_OUTPUT_BYTES)"
            )
    return Resumption(outputs)


def run_element(engine: Engine, node_exec_id: int, index: int) -> dict[str, Any]:
    """Run element ``index`` of a WAITING fan-out node and record its result; the result for
    the chord's callback: ``index``, ``outputs`` (``[pin, value]`` pairs in yield order) and
    ``error`` (or None). An element whose result is recorded already (its message delivered
    again) is not run again; the element that records the last result gathers the node."""
    with engine.db.session() as session:
        recorded = recorded_element(session, node_exec_id, index)
    if recorded is not None:
        return recorded.message()
    result = _run_element(engine, node_exec_id, index)
    if result.error != NOT_WAITING:
        with engine.db.session() as session:
            record_element(session, node_exec_id, result)
        gather_if_complete(engine, node_exec_id)
    return result.message()


def _run_element(engine: Engine, node_exec_id: int, index: int) -> ElementResult:
    loaded = _load(engine, node_exec_id, index)
    if isinstance(loaded, str):
        return ElementResult(index, [], loaded)
    run, clock = loaded
    stop_found = functools.partial(_stop_found, engine, run.context.graph_exec_id, node_exec_id)
    watch = StopWatch(engine.timer, clock, run.context.logger, stop_found)
    watch.start()
    try:
        outputs = [[pin, value] for pin, value in element_outputs(run)]
    except Exception as exc:  # the block failed (or a timeout), or its run was stopped
        stopped = run.ending_of(exc, retries_done=None) is Ending.STOPPED
        return ElementResult(index, [], NOT_WAITING if stopped else error_message(exc))
    finally:
        watch.finish()
    return ElementResult(index, outputs, None)


def _load(engine: Engine, node_exec_id: int, index: int) -> tuple[RunningBlock, Clock] | str:
    """The element's run and its clock, or why it is not run."""
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
    logger = run_logger(
        view.user_id, view.graph_id, view.graph_exec_id, name, node_exec_id, view.block_id
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
    check = OutputCheck(engine.settings.max_output_bytes)
    return RunningBlock(block, inputs, context, clock, check), clock


def _stop_found(
    engine: Engine, graph_exec_id: str, node_exec_id: int, watches: int
) -> Exception | None:
    """The element's stop watch hook: its run's stop flag (Redis) at each watch, the database
    (the truth: the node no longer waits, or its run was cancelled) every few watches, or at
    once when Redis fails."""
    try:
        if engine.coordinator.stop_requested(graph_exec_id):
            return ExecutionStoppedError()
        read_database = database_due(watches)
    except CoordinationError:
        read_database = True
    if not read_database:
        return None
    with engine.db.session() as session:
        view = repo.claim_view(session, node_exec_id)
    stopped = view.status is not S.WAITING or view.cancel_requested_at is not None
    return ExecutionStoppedError() if stopped else None
