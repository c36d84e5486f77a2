"""Submitting a graph execution: validate the request, then write the execution and its
starting node executions in one transaction (SPEC §3.1)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from autoexec.blocks.registry import get_registry
from autoexec.dataflow import BlockLookup, RunSpec, graph_input_problems, start
from autoexec.engine.context import Engine, run_spec
from autoexec.engine.lifecycle import UNSTARTED_NODES, end_run
from autoexec.engine.limits import check_max_run_seconds
from autoexec.errors import InputValidationError
from autoexec.graph import Graph
from autoexec.json_values import NOT_FINITE, json_problem
from autoexec.statuses import ExecutionStatus
from autoexec.store import executions as repo
from autoexec.store.dataflow_sql import SqlDataflowStore
from autoexec.store.graphs import ensure_user, latest_version_number, load_graph
from autoexec.store.transaction import Transaction


@dataclass(frozen=True)
class RunRequest:
    graph_id: str
    user_id: str
    inputs: dict[str, Any] = field(default_factory=dict)
    graph_version: int | None = None
    nodes_input_masks: dict[str, dict[str, Any]] = field(default_factory=dict)
    nodes_to_skip: list[str] = field(default_factory=list)
    max_run_seconds: float | None = None
    credit_budget: int | None = None
    parent_execution_id: str | None = None
    root_execution_id: str | None = None
    parent_node_exec_id: int | None = None


def validate_request(
    graph: Graph,
    request: RunRequest,
    blocks: BlockLookup | None = None,
    max_input_bytes: int | None = None,
) -> None:
    """Reject unknown or missing graph inputs, inputs that cannot validate on the pins they
    feed or are bigger than ``max_input_bytes`` (as JSON), and masks/skips naming unknown
    nodes. ``blocks`` defaults to the process registry."""
    problems = [
        *_input_problems(graph, request.inputs),
        *_oversized_inputs(request.inputs, max_input_bytes),
        *_node_problems(graph, request),
    ]
    spec = RunSpec(
        graph,
        blocks or get_registry().get,
        {name: value for name, value in request.inputs.items() if _is_json(value)},
        request.nodes_input_masks,
        frozenset(request.nodes_to_skip),
    )
    problems += graph_input_problems(spec)
    if problems:
        raise InputValidationError("; ".join(problems))
    check_max_run_seconds(request.max_run_seconds)
    check_credit_budget(request.credit_budget)


def check_credit_budget(value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputValidationError(
            f"credit_budget must be a whole number of credits, 0 or more, got {value!r}"
        )


def _input_problems(graph: Graph, inputs: dict[str, Any]) -> list[str]:
    declared = {str(n.input_default.get("name")): n for n in graph.input_nodes()}
    problems = [f"unknown graph input {name!r}" for name in inputs if name not in declared]
    problems += [_not_json(f"graph input {name!r}", value) for name, value in inputs.items()]
    for name, node in declared.items():
        has_fallback = any(node.input_default.get(k) is not None for k in ("value", "default"))
        if name not in inputs and not has_fallback:
            problems.append(f"missing required graph input {name!r}")
    return [problem for problem in problems if problem]


def _oversized_inputs(inputs: dict[str, Any], limit: int | None) -> list[str]:
    if limit is None:
        return []
    sizes = {name: _json_size(value) for name, value in inputs.items() if _is_json(value)}
    return [
        f"graph input {name!r} is {size:,} bytes of JSON, over the limit of {limit:,} "
        "(AUTOEXEC_MAX_INPUT_BYTES): pass a reference to the data (a URL, a path) instead"
        for name, size in sizes.items()
        if size > limit
    ]


def _json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode())


def _is_json(value: Any) -> bool:
    return json_problem(value) is None


def _not_json(what: str, value: Any) -> str:
    """Why ``value`` given as ``what`` is refused, or "" if it is a JSON value."""
    problem = json_problem(value)
    if problem is None:
        return ""
    if problem == NOT_FINITE:
        return f"{what} is not a JSON value: {NOT_FINITE}"
    return (
        f"{what} is not a JSON value ({type(value).__name__}): give text, "
        "a number, true/false, null, a list or a mapping (quote dates in YAML)"
    )


def _mask_problems(masks: dict[str, dict[str, Any]]) -> list[str]:
    return [
        _not_json(f"nodes_input_masks[{node_id!r}][{pin!r}]", value)
        for node_id, mask in masks.items()
        for pin, value in mask.items()
    ]


def _node_problems(graph: Graph, request: RunRequest) -> list[str]:
    known = graph.nodes_by_id
    problems = [
        f"nodes_input_masks names unknown node {node_id!r}"
        for node_id in request.nodes_input_masks
        if node_id not in known
    ]
    problems += [
        f"nodes_to_skip names unknown node {node_id!r}"
        for node_id in request.nodes_to_skip
        if node_id not in known
    ]
    problems += _mask_problems(request.nodes_input_masks)
    return [problem for problem in problems if problem]


def create_execution(engine: Engine, request: RunRequest, exec_id: str | None = None) -> str:
    """Write a QUEUED execution with its starting node executions; return its id.

    With ``exec_id`` the call is idempotent: an execution that already has that id is reused.
    """
    with engine.db.session() as session:
        if exec_id is not None and repo.execution_exists(session, exec_id):
            return exec_id
        return write_execution(engine, session, request, exec_id)


def write_execution(
    engine: Engine, session: Transaction, request: RunRequest, exec_id: str | None = None
) -> str:
    """``create_execution`` in the caller's transaction (the caller publishes its run message
    after the commit)."""
    graph = requested_graph(engine, session, request)
    ensure_user(session, request.user_id)
    engine.metering.check_budget(request.credit_budget)
    if request.parent_execution_id is None:  # a child's parent node was charged already
        engine.metering.check_can_start(session, request.user_id)
    row = repo.create_graph_execution(session, _submission(graph, request), exec_id)
    spec = run_spec(engine, graph, row, with_inputs=True)
    meter = engine.metering.dispatch_meter(session, row.id, loaded=row)
    store = SqlDataflowStore(session, graph, row.id, meter=meter, user_id=request.user_id)
    repo.set_node_execution_count(row, len(start(spec, store)))
    return row.id


def requested_graph(engine: Engine, session: Transaction, request: RunRequest) -> Graph:
    """The graph version ``request`` runs (the latest if it names none), checked against the
    request; NotFoundError or InputValidationError says what is wrong."""
    version = request.graph_version or latest_version_number(
        session, request.graph_id, request.user_id
    )
    graph = load_graph(session, request.graph_id, version, request.user_id)
    validate_request(graph, request, engine.registry.get, engine.settings.max_input_bytes)
    return graph


def _submission(graph: Graph, request: RunRequest) -> repo.Submission:
    return repo.Submission(
        graph=graph,
        user_id=request.user_id,
        inputs=request.inputs,
        nodes_input_masks=request.nodes_input_masks,
        nodes_to_skip=request.nodes_to_skip,
        max_run_seconds=request.max_run_seconds,
        credit_budget=request.credit_budget,
        parent_execution_id=request.parent_execution_id,
        root_execution_id=request.root_execution_id,
        parent_node_exec_id=request.parent_node_exec_id,
    )


def fail_unpublished(engine: Engine, graph_exec_id: str, reason: str) -> bool:
    """The run message could not be published: fail the execution if it is still QUEUED, and
    end its node executions in the same transaction (none of them will ever run); True if it
    failed. One that a worker already moved on did get its message: it goes on."""
    S = ExecutionStatus
    with engine.db.session() as session:
        ended = end_run(
            engine,
            session,
            graph_exec_id,
            S.FAILED,
            error=reason,
            allowed_from=frozenset({S.QUEUED}),
            left=UNSTARTED_NODES,
        )
    return ended is not None
