"""The dataflow rules of SPEC §3, as plain functions over a small storage interface.

No I/O here: the distributed engine runs these rules over SQL (``store.dataflow_sql``) and the
reference interpreter over memory (``reference``). Both must give the same results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError

from autoexec.blocks.base import Block
from autoexec.errors import BlockNotFoundError, BlockNotRegisteredError
from autoexec.graph import GRAPH_INPUT_BLOCK, GRAPH_OUTPUT_BLOCK, Graph, Link, Node
from autoexec.pins import MISSING, merge_dynamic_inputs, pick
from autoexec.statuses import ExecutionStatus

BlockLookup = Callable[[str], type[Block[Any]]]


class DataflowStore(Protocol):
    """What the rules need to read and write, scoped to one graph execution."""

    def earliest_incomplete_lacking(self, node_id: str, pin: str) -> int | None: ...

    def incomplete_lacking(self, node_id: str, pin: str) -> list[int]: ...

    def create_execution(self, node_id: str) -> int: ...

    def add_input(self, exec_id: int, pin: str, value: Any) -> None: ...

    def delivered_inputs(self, exec_id: int) -> dict[str, Any]: ...

    def set_static_input(self, node_id: str, pin: str, value: Any) -> None: ...

    def static_inputs(self, node_id: str) -> dict[str, Any]: ...

    def mark_queued(self, exec_id: int, inputs: dict[str, Any]) -> None: ...

    def mark_skipped(self, exec_id: int) -> None: ...

    def note_not_ready(self, exec_id: int, reason: str) -> None: ...


@dataclass(frozen=True)
class RunSpec:
    """What one graph execution runs: the graph version, its blocks, masks and skips."""

    graph: Graph
    blocks: BlockLookup
    inputs: dict[str, Any] = field(default_factory=dict)
    nodes_input_masks: dict[str, dict[str, Any]] = field(default_factory=dict)
    nodes_to_skip: frozenset[str] = frozenset()

    def block_of(self, node: Node) -> type[Block[Any]]:
        try:
            return self.blocks(node.block_id)
        except BlockNotFoundError:
            raise BlockNotRegisteredError(node.block_id, node.id) from None


@dataclass(frozen=True)
class Readiness:
    ready: bool
    inputs: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


# --- start (§3.1) ---------------------------------------------------------------------------


def start(spec: RunSpec, store: DataflowStore) -> list[int]:
    """Create one execution per starting node; return the ids that became QUEUED."""
    ready: list[int] = []
    for node in spec.graph.starting_nodes():
        exec_id = store.create_execution(node.id)
        graph_input = _graph_input_for(spec, node)
        if graph_input is not MISSING:
            store.add_input(exec_id, "value", graph_input)
        if settle(spec, store, exec_id, node):
            ready.append(exec_id)
    return ready


def _graph_input_for(spec: RunSpec, node: Node) -> Any:
    if node.block_id != GRAPH_INPUT_BLOCK:
        return MISSING
    return spec.inputs.get(str(node.input_default.get("name")), MISSING)


# --- delivery (§3.2, §3.4) ------------------------------------------------------------------


def deliver(
    spec: RunSpec, store: DataflowStore, source_node_id: str, name: str, value: Any
) -> list[int]:
    """Route one yielded output along every link leaving its node; return newly QUEUED ids."""
    ready: list[int] = []
    for link in spec.graph.links_from.get(source_node_id, []):
        part = pick(value, link.source_name, name)
        if part is not MISSING:
            ready.extend(deliver_on_link(spec, store, link, part))
    return ready


def deliver_on_link(spec: RunSpec, store: DataflowStore, link: Link, value: Any) -> list[int]:
    sink = spec.graph.node(link.sink_id)
    if is_static(spec, link):
        store.set_static_input(sink.id, link.sink_name, value)
    target = store.earliest_incomplete_lacking(sink.id, link.sink_name)
    if target is None:
        target = store.create_execution(sink.id)
    store.add_input(target, link.sink_name, value)
    touched = [target]
    if is_static(spec, link):
        touched += backfill_static(store, sink.id, link.sink_name, value, exclude=target)
    return [exec_id for exec_id in touched if settle(spec, store, exec_id, sink)]


def backfill_static(
    store: DataflowStore, node_id: str, pin: str, value: Any, exclude: int
) -> list[int]:
    """Give a static value to every other INCOMPLETE execution lacking the pin (§3.4)."""
    filled = [e for e in store.incomplete_lacking(node_id, pin) if e != exclude]
    for exec_id in filled:
        store.add_input(exec_id, pin, value)
    return filled


def is_static(spec: RunSpec, link: Link) -> bool:
    return link.is_static or spec.block_of(spec.graph.node(link.source_id)).static_output


# --- ready check (§3.3, §3.5) ---------------------------------------------------------------


def settle(spec: RunSpec, store: DataflowStore, exec_id: int, node: Node) -> bool:
    """Re-check an INCOMPLETE execution; mark it QUEUED (or skipped) if it is ready."""
    readiness = check_ready(
        spec, node, store.delivered_inputs(exec_id), store.static_inputs(node.id)
    )
    if not readiness.ready:
        store.note_not_ready(exec_id, readiness.reason)
        return False
    if node.id in spec.nodes_to_skip:
        store.mark_skipped(exec_id)
        return False
    store.mark_queued(exec_id, readiness.inputs)
    return True


def compose_inputs(
    spec: RunSpec, node: Node, delivered: dict[str, Any], static: dict[str, Any]
) -> dict[str, Any]:
    """input_default ⊕ delivered values ⊕ static values ⊕ input mask (SPEC §3.3)."""
    mask = spec.nodes_input_masks.get(node.id, {})
    return {**node.input_default, **delivered, **static, **mask}


def check_ready(
    spec: RunSpec, node: Node, delivered: dict[str, Any], static: dict[str, Any]
) -> Readiness:
    raw = compose_inputs(spec, node, delivered, static)
    # A constant default does not stand in for a linked pin: the link's value must arrive.
    arrived = delivered.keys() | static.keys() | spec.nodes_input_masks.get(node.id, {}).keys()
    missing_links = sorted(
        {link.sink_name for link in spec.graph.links_into.get(node.id, [])} - arrived
    )
    if missing_links:
        return Readiness(False, reason=f"waiting for linked input(s) {', '.join(missing_links)}")
    return validate_inputs(spec.block_of(node), raw)


def validate_inputs(block: type[Block[Any]], raw: dict[str, Any]) -> Readiness:
    """Merge dynamic pins and validate against the block's ``Input`` schema (with coercion)."""
    merged = merge_dynamic_inputs(raw)
    missing = sorted(pin for pin in block.required_inputs() if merged.get(pin) is None)
    if missing:
        return Readiness(False, reason=f"missing required input(s) {', '.join(missing)}")
    try:
        model = block.Input.model_validate(merged)
    except ValidationError as exc:
        return Readiness(False, reason=f"invalid input: {describe_validation_error(exc)}")
    return Readiness(True, inputs=_known_pins(block, model.model_dump(mode="json"), merged))


def _known_pins(
    block: type[Block[Any]], dumped: dict[str, Any], merged: dict[str, Any]
) -> dict[str, Any]:
    # Keep only pins that were given, so stored inputs read like what the user sent.
    return {pin: dumped[pin] for pin in block.input_pins() if pin in merged}


def describe_validation_error(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'input'}: {err['msg']}" for err in exc.errors()
    )


# --- errors and end (§3.6, §3.7) ------------------------------------------------------------


@dataclass(frozen=True)
class FailedNode:
    node_id: str
    error: str


def unhandled_failures(graph: Graph, failed: Iterable[FailedNode]) -> list[FailedNode]:
    """Failures whose node has no link leaving its ``error`` pin."""
    return [f for f in failed if not graph.error_is_handled(f.node_id)]


def final_status(graph: Graph, failed: Iterable[FailedNode]) -> ExecutionStatus:
    if unhandled_failures(graph, failed):
        return ExecutionStatus.FAILED
    return ExecutionStatus.COMPLETED


@dataclass(frozen=True)
class YieldedOutput:
    node_id: str
    block_id: str
    name: str
    value: Any
    node_inputs: dict[str, Any]


def graph_outputs(outputs: Iterable[YieldedOutput]) -> dict[str, list[Any]]:
    """The values yielded by ``agent_output`` nodes on ``output``, by output name, in order."""
    result: dict[str, list[Any]] = {}
    for out in outputs:
        if out.block_id == GRAPH_OUTPUT_BLOCK and out.name == "output":
            result.setdefault(str(out.node_inputs.get("name")), []).append(out.value)
    return result
