"""Graphs, nodes and links (SPEC §1): the models, loading from JSON/YAML, and validation."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from autoexec.blocks.base import ERROR_PIN, Block
from autoexec.blocks.registry import BlockRegistry
from autoexec.errors import BlockNotFoundError, GraphValidationError
from autoexec.pins import base_name

GRAPH_INPUT_BLOCK = "agent_input"
GRAPH_OUTPUT_BLOCK = "agent_output"


# A day: a node that needs longer belongs in a sub-graph or an external job.
LONGEST_TIMEOUT_SECONDS = 86_400


class Node(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    block_id: str = Field(min_length=1)
    input_default: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    fan_out: str | None = None
    # Seconds this node may run; overrides its block's ``timeout_seconds`` and the
    # AUTOEXEC_NODE_TIMEOUT_SECONDS default.
    timeout_seconds: float | None = Field(default=None, gt=0, le=LONGEST_TIMEOUT_SECONDS)


class Link(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source_id: str
    source_name: str
    sink_id: str
    sink_name: str
    is_static: bool = False


class GraphDefinition(BaseModel):
    """What a user writes: the content of a graph, without identity or version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | None = None
    name: str = "untitled"
    description: str = ""
    nodes: list[Node]
    links: list[Link] = Field(default_factory=list)

    def content_hash(self) -> str:
        """A digest of what the graph does (not its id), to tell whether a save changed it."""
        content = self.model_dump(mode="json", include={"name", "description", "nodes", "links"})
        encoded = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(encoded.encode()).hexdigest()


class Graph(GraphDefinition):
    """A saved graph version."""

    model_config = ConfigDict(extra="forbid", frozen=True, ignored_types=(cached_property,))

    id: str
    version: int = Field(ge=1)
    user_id: str

    @cached_property
    def nodes_by_id(self) -> dict[str, Node]:
        return {node.id: node for node in self.nodes}

    @cached_property
    def links_from(self) -> dict[str, list[Link]]:
        out: dict[str, list[Link]] = {}
        for link in self.links:
            out.setdefault(link.source_id, []).append(link)
        return out

    @cached_property
    def links_into(self) -> dict[str, list[Link]]:
        into: dict[str, list[Link]] = {}
        for link in self.links:
            into.setdefault(link.sink_id, []).append(link)
        return into

    def node(self, node_id: str) -> Node:
        return self.nodes_by_id[node_id]

    def input_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.block_id == GRAPH_INPUT_BLOCK]

    @cached_property
    def starting_node_ids(self) -> frozenset[str]:
        return frozenset(node.id for node in self.starting_nodes())

    def starting_nodes(self) -> list[Node]:
        """Nodes with no incoming link, plus every graph-input node (SPEC §3.1)."""
        return [
            n for n in self.nodes if n.block_id == GRAPH_INPUT_BLOCK or n.id not in self.links_into
        ]

    def error_is_handled(self, node_id: str) -> bool:
        return any(link.source_name == ERROR_PIN for link in self.links_from.get(node_id, []))


def parse_definition(data: dict[str, Any] | str) -> GraphDefinition:
    """Build a definition from a dict or a JSON/YAML text; errors say where."""
    if isinstance(data, str):
        try:
            data = yaml.safe_load(data)
        except yaml.YAMLError as exc:
            raise GraphValidationError(
                f"graph definition is not valid JSON or YAML: {exc}"
            ) from None
    if not isinstance(data, dict):
        raise GraphValidationError("graph definition must be a mapping with 'nodes' and 'links'")
    try:
        return GraphDefinition.model_validate(data)
    except ValidationError as exc:
        raise GraphValidationError(f"graph definition is malformed: {_describe(exc)}") from None


def load_definition(path: str | Path) -> GraphDefinition:
    return parse_definition(Path(path).read_text())


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
    )


def validate_graph(definition: GraphDefinition, registry: BlockRegistry) -> None:
    """Raise ``GraphValidationError`` listing every problem, each naming the node and pin."""
    problems = [
        *_duplicate_node_ids(definition),
        *_unknown_blocks(definition, registry),
        *_bad_links(definition, registry),
        *_duplicate_links(definition),
        *_bad_fan_outs(definition, registry),
        *_bad_constants(definition, registry),
        *_duplicate_input_names(definition),
        *_nothing_can_start(definition),
    ]
    if problems:
        raise GraphValidationError("invalid graph: " + "; ".join(problems))


def _duplicate_node_ids(definition: GraphDefinition) -> list[str]:
    counts = Counter(node.id for node in definition.nodes)
    return [f"duplicate node id {node_id!r}" for node_id, n in counts.items() if n > 1]


def _unknown_blocks(definition: GraphDefinition, registry: BlockRegistry) -> list[str]:
    return [
        f"node {node.id!r}: unknown block {node.block_id!r}"
        for node in definition.nodes
        if node.block_id not in registry
    ]


def _bad_links(definition: GraphDefinition, registry: BlockRegistry) -> list[str]:
    nodes = {node.id: node for node in definition.nodes}
    problems: list[str] = []
    for link in definition.links:
        source, sink = nodes.get(link.source_id), nodes.get(link.sink_id)
        where = f"link {link.source_id}.{link.source_name} -> {link.sink_id}.{link.sink_name}"
        if source is None:
            problems.append(f"{where}: source node {link.source_id!r} does not exist")
        elif not _has_output(registry, source, link.source_name):
            problems.append(
                f"node {source.id!r} ({source.block_id}) has no output pin {link.source_name!r}"
            )
        if sink is None:
            problems.append(f"{where}: sink node {link.sink_id!r} does not exist")
        elif not _has_input(registry, sink, link.sink_name):
            problems.append(
                f"node {sink.id!r} ({sink.block_id}) has no input pin {link.sink_name!r}"
            )
    return problems


def _bad_fan_outs(definition: GraphDefinition, registry: BlockRegistry) -> list[str]:
    return [
        f"node {node.id!r} ({node.block_id}): fan_out names no input pin {node.fan_out!r}"
        for node in definition.nodes
        if node.fan_out is not None and not _is_input_pin(registry, node, node.fan_out)
    ]


def _duplicate_links(definition: GraphDefinition) -> list[str]:
    counts = Counter(
        (link.source_id, link.source_name, link.sink_id, link.sink_name)
        for link in definition.links
    )
    return [
        f"link {source}.{source_name} -> {sink}.{sink_name} appears {n} times: "
        "each value would arrive that many times; keep one"
        for (source, source_name, sink, sink_name), n in counts.items()
        if n > 1
    ]


def _bad_constants(definition: GraphDefinition, registry: BlockRegistry) -> list[str]:
    """Constant inputs (``input_default``) that their pin's type refuses: they could only fail
    the node when it runs. Dynamic pins (``values_#_key``) are checked once merged, at run."""
    problems: list[str] = []
    for node in definition.nodes:
        if node.block_id in registry:
            block = registry.get(node.block_id)
            problems += [
                problem
                for pin, value in node.input_default.items()
                if pin in block.input_pins()
                for problem in _constant_problems(node, block, pin, value)
            ]
    return problems


def _constant_problems(node: Node, block: type[Block[Any]], pin: str, value: Any) -> list[str]:
    where = f"node {node.id!r} ({node.block_id}) input {pin!r}"
    if pin == node.fan_out:
        if not isinstance(value, list):
            return [
                f"{where}: a fan_out input must be a list, not {type(value).__name__} "
                f"({_shown(value)})"
            ]
        return [
            problem
            for index, element in enumerate(value)
            for problem in _type_problems(f"{where} element {index}", block, pin, element)
        ]
    return _type_problems(where, block, pin, value)


def _type_problems(where: str, block: type[Block[Any]], pin: str, value: Any) -> list[str]:
    try:
        block.validate_input(pin, value)
    except ValidationError as exc:
        reasons = "; ".join(err["msg"] for err in exc.errors())
        return [f"{where}: constant {_shown(value)} is invalid: {reasons}"]
    return []


def _shown(value: Any, width: int = 60) -> str:
    text = json.dumps(value, default=repr, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def _is_input_pin(registry: BlockRegistry, node: Node, pin: str) -> bool:
    try:
        block = registry.get(node.block_id)
    except BlockNotFoundError:
        return True  # reported as an unknown block
    return pin in block.input_pins()


def _has_output(registry: BlockRegistry, node: Node, pin: str) -> bool:
    try:
        block = registry.get(node.block_id)
    except BlockNotFoundError:
        return True  # reported as an unknown block
    return block.has_output_pin(pin) or block.has_output_pin(base_name(pin))


def _has_input(registry: BlockRegistry, node: Node, pin: str) -> bool:
    try:
        block = registry.get(node.block_id)
    except BlockNotFoundError:
        return True
    return base_name(pin) in block.input_pins()


def _duplicate_input_names(definition: GraphDefinition) -> list[str]:
    users: dict[str, list[str]] = {}
    for node in definition.nodes:
        if node.block_id == GRAPH_INPUT_BLOCK:
            users.setdefault(str(node.input_default.get("name")), []).append(node.id)
    return [
        f"graph input name {name!r} is used by more than one node: "
        + ", ".join(repr(node_id) for node_id in node_ids)
        for name, node_ids in users.items()
        if len(node_ids) > 1
    ]


def _nothing_can_start(definition: GraphDefinition) -> list[str]:
    if not definition.nodes or _starting_ids(definition):
        return []
    names = ", ".join(repr(node.id) for node in definition.nodes)
    return [
        f"no node can start: every node ({names}) has an incoming link and none is an "
        f"{GRAPH_INPUT_BLOCK!r}; give the graph an input node or a node with no incoming link"
    ]


def _starting_ids(definition: GraphDefinition) -> set[str]:
    """Nodes with no incoming link, plus every graph-input node (SPEC §3.1)."""
    sinks = {link.sink_id for link in definition.links}
    return {
        node.id
        for node in definition.nodes
        if node.block_id == GRAPH_INPUT_BLOCK or node.id not in sinks
    }


def graph_warnings(definition: GraphDefinition) -> list[str]:
    """What is legal but suspicious in a graph: nodes that no starting node reaches through
    links, so they can never run (such as a closed cycle beside a normal chain)."""
    reached = _reachable(definition, _starting_ids(definition))
    unreached = [node.id for node in definition.nodes if node.id not in reached]
    if not reached or not unreached:
        return []  # nothing can start: that is an error of validate_graph
    names = ", ".join(repr(node_id) for node_id in unreached)
    return [
        f"node(s) {names} can never run: no starting node (an {GRAPH_INPUT_BLOCK!r} node or "
        "a node with no incoming link) reaches them through links"
    ]


def _reachable(definition: GraphDefinition, starts: set[str]) -> set[str]:
    targets: dict[str, list[str]] = {}
    for link in definition.links:
        targets.setdefault(link.source_id, []).append(link.sink_id)
    reached, frontier = set(starts), list(starts)
    while frontier:
        for sink_id in targets.get(frontier.pop(), []):
            if sink_id not in reached:
                reached.add(sink_id)
                frontier.append(sink_id)
    return reached
