"""The dataflow rules of SPEC §3, as plain functions over a small storage interface.

No I/O here: the distributed engine runs these rules over SQL (``store.dataflow_sql``) and the
reference interpreter over memory (``reference``). Both must give the same results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError

from autoexec.blocks.base import Block
from autoexec.errors import BlockNotFoundError, BlockNotRegisteredError
from autoexec.graph import GRAPH_INPUT_BLOCK, GRAPH_OUTPUT_BLOCK, Graph, Link, Node
from autoexec.pins import LIST, MISSING, OBJECT, Pin, merge_dynamic_inputs, parse_pin, pick
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

    def mark_queued(self, exec_id: int, node_id: str, inputs: dict[str, Any]) -> None: ...

    def mark_skipped(self, exec_id: int) -> None: ...

    def note_not_ready(self, exec_id: int, reason: str) -> None: ...

    def mark_failed(self, exec_id: int, error: str, inputs: dict[str, Any]) -> None:
        """End an INCOMPLETE execution FAILED and record ``error`` as its ``error`` output,
        to be delivered like any yielded output (SPEC §3.3, §3.6)."""
        ...


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
    """The ready check's verdict. ``error`` is set when every input is present but one does
    not validate: more input cannot fix that, so the execution fails."""

    ready: bool
    inputs: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    error: str | None = None


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


def static_sinks(spec: RunSpec) -> frozenset[str]:
    """The nodes a static link may go into: only they can have static inputs. A link from a
    block this process lacks counts (it cannot tell; the delivery that needs it will say)."""
    return frozenset(link.sink_id for link in spec.graph.links if _maybe_static(spec, link))


def _maybe_static(spec: RunSpec, link: Link) -> bool:
    try:
        return is_static(spec, link)
    except BlockNotRegisteredError:
        return True


# --- ready check (§3.3, §3.5) ---------------------------------------------------------------


def settle(spec: RunSpec, store: DataflowStore, exec_id: int, node: Node) -> bool:
    """Re-check an INCOMPLETE execution; mark it QUEUED if it is ready (True), skipped if it
    is complete but skipped, FAILED if it is complete but invalid; else note why it waits."""
    readiness = check_ready(
        spec, node, store.delivered_inputs(exec_id), store.static_inputs(node.id)
    )
    if not readiness.ready and readiness.error is None:
        store.note_not_ready(exec_id, readiness.reason)
        return False
    if node.id in spec.nodes_to_skip:
        store.mark_skipped(exec_id)
        return False
    if readiness.error is not None:
        store.mark_failed(exec_id, invalid_input_message(node, readiness.error), readiness.inputs)
        return False
    store.mark_queued(exec_id, node.id, readiness.inputs)
    return True


def invalid_input_message(node: Node, details: str) -> str:
    """What a node execution whose inputs can never validate yields on its ``error`` pin."""
    return f"invalid input for node {node.id!r} ({node.block_id}): {details}"


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
    if node.fan_out is not None:
        return validate_fan_out_inputs(spec.block_of(node), raw, node.fan_out)
    return validate_inputs(spec.block_of(node), raw)


def elements_of(inputs: Mapping[str, Any], pin: str) -> list[Any]:
    """The list a fan-out node fans out over (SPEC §8.3); a ValueError (the node fails) if it
    is not one."""
    value = inputs.get(pin)
    if not isinstance(value, list):
        raise ValueError(f"fan_out input {pin!r} must be a list, not {type(value).__name__}")
    return value


def validate_fan_out_inputs(block: type[Block[Any]], raw: dict[str, Any], pin: str) -> Readiness:
    """A fan-out node's inputs (SPEC §8.3): ``pin`` holds a list, and the inputs validate
    with each element in the list's place; the list is kept, its elements as validated."""
    elements = raw.get(pin)
    if not isinstance(elements, list):
        if elements is None:
            return Readiness(False, reason=f"missing required input(s) {pin}")
        error = f"{pin}: a fan_out input must be a list, not {type(elements).__name__}"
        return Readiness(False, inputs=raw, reason=f"invalid input: {error}", error=error)
    checked: list[Any] = []
    others = {name: value for name, value in raw.items() if name != pin}
    readiness = Readiness(True, inputs=others)
    for index, element in enumerate(elements):
        readiness = validate_inputs(block, {**others, pin: element})
        if readiness.error is not None:
            error = f"fan_out element {index}: {readiness.error}"
            return Readiness(False, inputs=raw, reason=f"invalid input: {error}", error=error)
        if not readiness.ready:
            return readiness
        checked.append(readiness.inputs.get(pin))
    return Readiness(True, inputs={**readiness.inputs, pin: checked})


def validate_inputs(block: type[Block[Any]], raw: dict[str, Any]) -> Readiness:
    """Merge dynamic pins and validate against the block's ``Input`` schema (with coercion)."""
    merged = merge_dynamic_inputs(raw)
    missing = sorted(pin for pin in block.required_inputs() if merged.get(pin) is None)
    if missing:
        return Readiness(False, reason=f"missing required input(s) {', '.join(missing)}")
    try:
        model = block.Input.model_validate(merged)
    except ValidationError as exc:
        details = describe_validation_error(exc)
        given = {pin: value for pin, value in merged.items() if pin in block.input_pins()}
        return Readiness(False, inputs=given, reason=f"invalid input: {details}", error=details)
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


# --- graph inputs at submission (§3.3) ------------------------------------------------------


def graph_input_problems(spec: RunSpec) -> list[str]:
    """Every submitted graph input that cannot validate on a pin it feeds, named with the
    node and pin, so that a run that could only fail or wait forever is never started."""
    return [problem for node in spec.graph.input_nodes() for problem in _input_problems(spec, node)]


def _input_problems(spec: RunSpec, node: Node) -> list[str]:
    name = str(node.input_default.get("name"))
    value = spec.inputs.get(name)
    overridden = "value" in spec.nodes_input_masks.get(node.id, {})
    if value is None or overridden or node.id in spec.nodes_to_skip:
        return []  # nothing, or something else, leaves this input node
    problems = []
    for link in spec.graph.links_from.get(node.id, []):
        refusal = _link_refusal(spec, link, pick(value, link.source_name, "result"))
        if refusal is not None:
            sink = spec.graph.node(link.sink_id)
            problems.append(
                f"graph input {name!r} = {_shown(value)} cannot feed pin {link.sink_name!r} "
                f"of node {sink.id!r} ({sink.block_id}): {refusal}"
            )
    return problems


def _link_refusal(spec: RunSpec, link: Link, part: Any) -> str | None:
    sink = spec.graph.node(link.sink_id)
    masked = link.sink_name in spec.nodes_input_masks.get(sink.id, {})
    if part is MISSING or part is None or masked or sink.id in spec.nodes_to_skip:
        return None
    if link.sink_name == sink.fan_out:
        return None  # a list of elements: the ready check validates each
    try:
        block = spec.block_of(sink)
    except BlockNotFoundError:
        return None  # a custom block only the workers load: their ready check applies
    return pin_refusal(block, link.sink_name, part)


def pin_refusal(block: type[Block[Any]], pin_name: str, value: Any) -> str | None:
    """Why ``value`` on input ``pin_name`` can never validate (None if it can, or if only the
    whole input can tell). Validated as the ready check does; only the errors about this pin
    (or the element a dynamic pin builds) count, since other pins may still arrive."""
    pin = parse_pin(pin_name)
    if pin.kind == OBJECT or (pin.kind == LIST and not pin.key.isdigit()):
        return None  # an attribute of an object, or a part that is never merged
    try:
        block.Input.model_validate(merge_dynamic_inputs({pin_name: value}))
    except ValidationError as exc:
        prefix = _error_prefix(pin)
        reasons = [
            _located(err["loc"][len(prefix) :], err["msg"])
            for err in exc.errors()
            if tuple(err["loc"][: len(prefix)]) == prefix
        ]
        return "; ".join(reasons) or None
    return None


def _error_prefix(pin: Pin) -> tuple[str | int, ...]:
    if not pin.is_dynamic:
        return (pin.base,)
    return (pin.base, int(pin.key) if pin.kind == LIST else pin.key)


def _located(loc: tuple[str | int, ...], message: str) -> str:
    return f"{'.'.join(str(p) for p in loc)}: {message}" if loc else message


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
