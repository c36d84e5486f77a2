"""The Python API (SPEC §12). Every call is scoped to ``user_id``: another user's graph or
execution is "not found"."""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Collection, Iterator
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import OperationalError

from autoexec.billing import ledger as credits
from autoexec.billing.ledger import CreditTransactionView
from autoexec.coordination import Keys, PubSub
from autoexec.engine.cancellation import MISSING_BLOCK_NODE, cancel_execution
from autoexec.engine.context import Engine
from autoexec.engine.submission import RunRequest, create_execution, fail_unpublished
from autoexec.engine.suspensions.review import Decision, decide_review
from autoexec.errors import AutoexecError, GraphWarning, InputValidationError
from autoexec.graph import (
    Graph,
    GraphDefinition,
    Node,
    graph_warnings,
    parse_definition,
    validate_graph,
)
from autoexec.observability.events import GRAPH_EVENT
from autoexec.observability.live import Event
from autoexec.observability.subscription import Subscription, user_events
from autoexec.statuses import GRAPH_STATUSES, TERMINAL, ExecutionStatus
from autoexec.store import executions as repo
from autoexec.store import graphs as graph_store
from autoexec.store import reviews as review_store
from autoexec.store.tables import GraphExecution, NodeExecution
from autoexec.tasks import get_engine

log = logging.getLogger(__name__)
graph_log = logging.getLogger("autoexec.graph")

__all__ = [
    "CreditTransactionView",
    "ExecutionRow",
    "ExecutionView",
    "NeverRanView",
    "NodeExecutionView",
    "ReviewView",
    "approve",
    "cancel",
    "execute_graph",
    "get_balance",
    "get_execution",
    "list_executions",
    "list_graphs",
    "list_reviews",
    "reject",
    "rerun",
    "save_graph",
    "subscribe",
    "subscribe_user",
    "top_up",
    "transactions",
    "wait",
]

NO_INPUT_ARRIVED = "no input arrived"
BLOCK_MISSING = (
    "an input arrived, but its block {block_id!r} is not registered on the worker that was to "
    "deliver it: the run stopped FAILED (see its error)"
)
WAITING_FOR_INPUTS = "waiting for inputs"
# Only a run that ended on its own has nodes that "never ran"; a cancelled one was stopped.
_ENDED_BY_ITSELF = frozenset({ExecutionStatus.COMPLETED, ExecutionStatus.FAILED})
_STOPPED_SIGNS = frozenset(
    {ExecutionStatus.TERMINATED, ExecutionStatus.RUNNING, ExecutionStatus.QUEUED}
)


class NodeExecutionView(BaseModel):
    id: int
    node_id: str
    block_id: str
    status: ExecutionStatus
    inputs: dict[str, Any] | None
    outputs: dict[str, list[Any]]
    stats: dict[str, Any]
    error: str | None
    attempt: int
    created_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None


class NeverRanView(BaseModel):
    """A graph node that did not run in an ended execution, and why.

    ``node_exec_id`` is the INCOMPLETE node execution left waiting, or None when no input ever
    reached the node.
    """

    node_id: str
    block_id: str
    node_exec_id: int | None
    reason: str


class ExecutionView(BaseModel):
    id: str
    graph_id: str
    graph_version: int
    graph_name: str
    user_id: str
    status: ExecutionStatus
    inputs: dict[str, Any]
    outputs: dict[str, list[Any]]
    stats: dict[str, Any]
    error: str | None
    parent_execution_id: str | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    node_executions: list[NodeExecutionView]
    never_ran: list[NeverRanView]
    credits_spent: int = 0  # so far (metering on); ``stats["cost"]`` once the run ended
    credit_budget: int | None = None

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL


class ExecutionRow(BaseModel):
    """One execution in ``list_executions``."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    graph_id: str
    graph_version: int
    graph_name: str
    status: ExecutionStatus
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    node_executions: int


def _engine(engine: Engine | None) -> Engine:
    return engine or get_engine()


def save_graph(
    definition: dict[str, Any] | str | GraphDefinition,
    user_id: str,
    engine: Engine | None = None,
    new: bool = False,
) -> tuple[str, int]:
    """Validate and store a graph; returns ``(graph_id, version)``.

    A definition with an ``id`` is a version of that graph; one without is a version of the
    user's graph of the same name (said with a ``GraphWarning`` when that adds a version), or
    with ``new`` (or no such graph) a new graph.
    """
    parsed = definition if isinstance(definition, GraphDefinition) else parse_definition(definition)
    engine = _engine(engine)
    validate_graph(parsed, engine.registry)
    _warn_about(parsed)
    with engine.db.session() as session:
        saved = graph_store.save_version(session, parsed, user_id, new)
    if saved.by_name and saved.changed:
        _warn(parsed, version_of_named_graph(saved))
    return saved.graph_id, saved.version


def version_of_named_graph(saved: graph_store.SavedGraph) -> str:
    return (
        f"saved as version {saved.version} of your graph of that name ({saved.graph_id}), "
        "not as a new graph: save with new=True (autoexec run --new) for a separate graph"
    )


def _warn_about(definition: GraphDefinition) -> None:
    """Log and emit (as ``GraphWarning``) what is legal but suspicious in a graph."""
    for message in graph_warnings(definition):
        _warn(definition, message)


def _warn(definition: GraphDefinition, message: str) -> None:
    graph_log.warning("graph %r: %s", definition.name, message)
    warnings.warn(f"graph {definition.name!r}: {message}", GraphWarning, stacklevel=3)


def list_graphs(user_id: str, engine: Engine | None = None) -> list[dict[str, Any]]:
    with _engine(engine).db.session() as session:
        return [
            {"id": g.id, "version": g.version, "name": g.name, "nodes": len(g.nodes)}
            for g in graph_store.list_graphs(session, user_id)
        ]


def execute_graph(
    graph_id: str,
    user_id: str,
    inputs: dict[str, Any] | None = None,
    graph_version: int | None = None,
    nodes_input_masks: dict[str, dict[str, Any]] | None = None,
    nodes_to_skip: list[str] | None = None,
    max_run_seconds: float | None = None,
    engine: Engine | None = None,
    credit_budget: int | None = None,
) -> str:
    """Create an execution and send it to the workers; returns the graph execution id.

    With ``max_run_seconds`` the run ends FAILED once it has been RUNNING that long (the time
    it waits QUEUED for a free slot does not count). With ``credit_budget`` (metering on) a
    node whose charge would take the run's spend past it fails with BudgetExceededError and
    the run ends FAILED. With metering on, a user whose balance is 0 or less is refused with
    InsufficientBalanceError and nothing is queued.
    """
    engine = _engine(engine)
    request = RunRequest(
        graph_id,
        user_id,
        dict(inputs or {}),
        graph_version,
        dict(nodes_input_masks or {}),
        list(nodes_to_skip or []),
        max_run_seconds=max_run_seconds,
        credit_budget=credit_budget,
    )
    graph_exec_id = create_execution(engine, request)
    try:
        engine.dispatcher.run_graph(graph_exec_id)
    except Exception as exc:
        _fail_unpublished(engine, graph_exec_id, exc)
    return graph_exec_id


def _fail_unpublished(engine: Engine, graph_exec_id: str, exc: Exception) -> None:
    """Publishing the run message raised: fail the execution if it is still QUEUED. One that a
    worker already moved on did get its message (it went out before the error): it goes on."""
    reason = f"could not publish the run message: {type(exc).__name__}: {exc}"
    if fail_unpublished(engine, graph_exec_id, reason):
        raise AutoexecError(f"graph execution {graph_exec_id} failed: {reason}") from exc
    log.warning("graph execution %s started although publishing raised: %s", graph_exec_id, exc)


def get_execution(graph_exec_id: str, user_id: str, engine: Engine | None = None) -> ExecutionView:
    """Status, outputs, node executions and stats of one execution, as of one moment."""
    with _engine(engine).db.snapshot() as session:
        execution = repo.get_graph_execution(session, graph_exec_id, user_id)
        graph = graph_store.load_graph(session, execution.graph_id, execution.graph_version)
        nodes = {node.id: node for node in repo.node_executions(session, graph_exec_id)}
        stored = repo.outputs_of_graph_execution(session, graph_exec_id)
        view = _view(execution, graph, repo.agent_outputs(nodes, stored), nodes, _by_node(stored))
    return view


def list_executions(
    user_id: str,
    status: ExecutionStatus | str | None = None,
    graph_id: str | None = None,
    limit: int = 20,
    engine: Engine | None = None,
) -> list[ExecutionRow]:
    """The user's executions, newest first: optionally only those of one status or graph."""
    wanted = None if status is None else _parse_status(status)
    if limit < 1:
        raise InputValidationError(f"limit must be at least 1, not {limit}")
    with _engine(engine).db.session() as session:
        rows = repo.list_graph_executions(session, user_id, wanted, graph_id, limit)
        return [ExecutionRow.model_validate(row) for row in rows]


def _parse_status(status: ExecutionStatus | str) -> ExecutionStatus:
    wanted = str(status).upper()
    if wanted not in GRAPH_STATUSES:
        known = ", ".join(GRAPH_STATUSES)
        raise InputValidationError(f"unknown status {status!r}: use one of {known}")
    return ExecutionStatus(wanted)


def rerun(
    graph_exec_id: str,
    user_id: str,
    engine: Engine | None = None,
    credit_budget: int | None = None,
) -> str:
    """Start a new execution of the same graph version with the same inputs, masks, skips,
    run deadline and credit budget (or ``credit_budget``); returns the new execution's id."""
    engine = _engine(engine)
    with engine.db.session() as session:
        old = repo.get_graph_execution(session, graph_exec_id, user_id)
    return execute_graph(
        old.graph_id,
        user_id,
        old.inputs,
        graph_version=old.graph_version,
        nodes_input_masks=old.nodes_input_masks,
        nodes_to_skip=old.nodes_to_skip,
        max_run_seconds=old.max_run_seconds,
        engine=engine,
        credit_budget=old.credit_budget if credit_budget is None else credit_budget,
    )


def _by_node(stored: list[repo.StoredOutput]) -> dict[int, dict[str, list[Any]]]:
    result: dict[int, dict[str, list[Any]]] = {}
    for output in stored:
        result.setdefault(output.node_exec_id, {}).setdefault(output.name, []).append(output.value)
    return result


def _view(
    execution: GraphExecution,
    graph: Graph,
    outputs: dict[str, list[Any]],
    nodes: dict[int, NodeExecution],
    node_outputs: dict[int, dict[str, list[Any]]],
) -> ExecutionView:
    return ExecutionView(
        id=execution.id,
        graph_id=execution.graph_id,
        graph_version=execution.graph_version,
        graph_name=graph.name,
        user_id=execution.user_id,
        status=execution.status,
        inputs=execution.inputs,
        outputs=outputs,
        stats=execution.stats,
        error=execution.error,
        parent_execution_id=execution.parent_execution_id,
        created_at=execution.created_at,
        started_at=execution.started_at,
        ended_at=execution.ended_at,
        node_executions=[_node_view(n, node_outputs.get(n.id, {})) for n in nodes.values()],
        never_ran=_never_ran(graph, nodes.values(), execution.stats)
        if _ended_by_itself(execution, nodes)
        else [],
        credits_spent=execution.credits_spent,
        credit_budget=execution.credit_budget,
    )


def _ended_by_itself(execution: GraphExecution, nodes: dict[int, NodeExecution]) -> bool:
    """A run that ran out of work; not one that was stopped (cancelled, or by a limit). A run
    ends by itself only when no node execution is QUEUED or RUNNING, and then none is
    TERMINATED; a stopped one has TERMINATED ones, or RUNNING ones that have yet to stop."""
    stopped = any(n.status in _STOPPED_SIGNS for n in nodes.values())
    return execution.status in _ENDED_BY_ITSELF and not stopped


def _never_ran(
    graph: Graph, nodes: Collection[NodeExecution], stats: dict[str, Any]
) -> list[NeverRanView]:
    """INCOMPLETE node executions with their reason, then graph nodes that got no execution:
    the one whose block a worker lacked (which stopped the run), and those no input reached."""
    waiting = [_left_waiting(n) for n in nodes if n.status is ExecutionStatus.INCOMPLETE]
    reached = {n.node_id for n in nodes}
    absent = [
        NeverRanView(
            node_id=n.id,
            block_id=n.block_id,
            node_exec_id=None,
            reason=_why_absent(n, stats.get(MISSING_BLOCK_NODE)),
        )
        for n in graph.nodes
        if n.id not in reached
    ]
    return waiting + absent


def _why_absent(node: Node, missing_block_node: str | None) -> str:
    if node.id == missing_block_node:
        return BLOCK_MISSING.format(block_id=node.block_id)
    return NO_INPUT_ARRIVED


def _left_waiting(node: NodeExecution) -> NeverRanView:
    return NeverRanView(
        node_id=node.node_id,
        block_id=node.block_id,
        node_exec_id=node.id,
        reason=str(node.stats.get("waiting") or WAITING_FOR_INPUTS),
    )


def _node_view(node: NodeExecution, outputs: dict[str, list[Any]]) -> NodeExecutionView:
    return NodeExecutionView(
        id=node.id,
        node_id=node.node_id,
        block_id=node.block_id,
        status=node.status,
        inputs=node.input_data,
        outputs=outputs,
        stats=node.stats,
        error=node.error,
        attempt=node.attempt,
        created_at=node.created_at,
        queued_at=node.queued_at,
        started_at=node.started_at,
        ended_at=node.ended_at,
    )


def wait(
    graph_exec_id: str, user_id: str, timeout: float = 60.0, engine: Engine | None = None
) -> ExecutionView:
    """Block until the execution ends (or ``timeout`` seconds pass: ``TimeoutError``)."""
    engine = _engine(engine)
    deadline = time.monotonic() + timeout
    pubsub = engine.coordinator.subscribe(Keys.events(graph_exec_id))
    try:
        while True:
            try:
                with engine.db.session() as session:
                    status = repo.status_of(session, graph_exec_id, user_id)
            except OperationalError as exc:
                if not exc.connection_invalidated or time.monotonic() >= deadline:
                    raise
                continue  # the database restarted: the pool has dropped its old connections
            remaining = deadline - time.monotonic()
            if status in TERMINAL:
                return get_execution(graph_exec_id, user_id, engine)
            if remaining <= 0:
                raise TimeoutError(
                    f"graph execution {graph_exec_id} still {status.value} after {timeout}s"
                )
            _next_graph_event(pubsub, min(remaining, 0.5))
    finally:
        pubsub.close()


def _next_graph_event(pubsub: PubSub, timeout: float) -> None:
    """Wait until a graph execution's event comes (its node events do not end it), or
    ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        message = pubsub.get_message(timeout=left)
        if message is not None and json.loads(message).get("type") == GRAPH_EVENT:
            return


def subscribe(
    graph_exec_id: str, user_id: str, engine: Engine | None = None, timeout: float | None = None
) -> Subscription:
    """The execution's events: first its current state read from the database (a
    ``GraphEvent``, then a ``NodeEvent`` per node execution with its outputs so far, marked
    ``replayed``), then each change as it happens, up to the final ``GraphEvent``. Every
    change comes once, in order per node execution, whenever the subscription starts. With
    ``timeout``, ``TimeoutError`` if the execution has not ended by then. Close it (or use it
    as a context manager) to stop early."""
    return Subscription(_engine(engine), graph_exec_id, user_id, timeout)


def subscribe_user(user_id: str, engine: Engine | None = None) -> Iterator[Event]:
    """Live events of all of the user's executions, as they happen, without end. It does not
    replay: what happened before the subscription, or while Redis was unreachable, is not in
    it (use ``subscribe`` for one execution's complete story)."""
    return user_events(_engine(engine), user_id)


def top_up(user_id: str, amount: int, key: str | None = None, engine: Engine | None = None) -> int:
    """Add ``amount`` credits to the user's balance; the new balance. With ``key`` the top-up
    is applied once, however often the call is repeated."""
    return credits.top_up(_engine(engine), user_id, amount, key)


def get_balance(user_id: str, engine: Engine | None = None) -> int:
    """The user's credit balance (0 for a user who never had credits)."""
    return credits.balance(_engine(engine), user_id)


def transactions(
    user_id: str, limit: int = 20, engine: Engine | None = None
) -> list[CreditTransactionView]:
    """The user's ledger, newest first: top-ups, charges (with the graph, node and block
    they were for), refunds and adjustments."""
    return credits.history(_engine(engine), user_id, limit)


def cancel(graph_exec_id: str, user_id: str, engine: Engine | None = None) -> str:
    """Cancel an execution; cancelling a finished one is a no-op that says so."""
    return cancel_execution(_engine(engine), graph_exec_id, user_id)


class ReviewView(BaseModel):
    """A human review (SPEC §8.2): what a suspended ``human_review`` node waits for."""

    model_config = ConfigDict(frozen=True)

    id: str
    graph_exec_id: str
    node_exec_id: int
    status: str
    data: Any
    message: str
    decided_data: Any = None
    reason: str | None = None
    created_at: datetime
    decided_at: datetime | None = None


def list_reviews(user_id: str, engine: Engine | None = None) -> list[ReviewView]:
    """The user's pending reviews, oldest first."""
    with _engine(engine).db.session() as session:
        return [_review_view(review) for review in review_store.pending_reviews(session, user_id)]


def approve(
    review_id: str, user_id: str, data: Any = None, engine: Engine | None = None
) -> ReviewView:
    """Approve a pending review; its node yields ``approved_data``: ``data`` if given, else
    the data as reviewed. The run goes on. Deciding a review twice is refused."""
    decision = Decision(approved=True, data=data)
    return _review_view(decide_review(_engine(engine), review_id, user_id, decision))


def reject(review_id: str, user_id: str, reason: str, engine: Engine | None = None) -> ReviewView:
    """Reject a pending review; its node yields ``rejected`` (the reason). The run goes on."""
    if not reason:
        raise InputValidationError("a rejection needs a reason")
    decision = Decision(approved=False, reason=reason)
    return _review_view(decide_review(_engine(engine), review_id, user_id, decision))


def _review_view(review: review_store.ReviewRecord) -> ReviewView:
    return ReviewView.model_validate(review, from_attributes=True)
