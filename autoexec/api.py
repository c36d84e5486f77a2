"""The Python API (SPEC §12). Every call is scoped to ``user_id``: another user's graph or
execution is "not found"."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from autoexec.coordination import Keys
from autoexec.dataflow import YieldedOutput, graph_outputs
from autoexec.engine.cancellation import cancel_execution
from autoexec.engine.context import Engine
from autoexec.engine.submission import RunRequest, create_execution
from autoexec.engine.tasks import get_engine
from autoexec.errors import AutoexecError
from autoexec.graph import GraphDefinition, parse_definition, validate_graph
from autoexec.statuses import TERMINAL, ExecutionStatus
from autoexec.store import executions as repo
from autoexec.store import graphs as graph_store
from autoexec.store.tables import GraphExecution, NodeExecution
from autoexec.store.transitions import transition_graph

__all__ = [
    "ExecutionView",
    "NodeExecutionView",
    "cancel",
    "execute_graph",
    "get_execution",
    "list_graphs",
    "save_graph",
    "wait",
]


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


class ExecutionView(BaseModel):
    id: str
    graph_id: str
    graph_version: int
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

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL


def _engine(engine: Engine | None) -> Engine:
    return engine or get_engine()


def save_graph(
    definition: dict[str, Any] | str | GraphDefinition, user_id: str, engine: Engine | None = None
) -> tuple[str, int]:
    """Validate and store a graph; returns ``(graph_id, version)``."""
    parsed = definition if isinstance(definition, GraphDefinition) else parse_definition(definition)
    engine = _engine(engine)
    validate_graph(parsed, engine.registry)
    with engine.db.session() as session:
        return graph_store.save_graph(session, parsed, user_id)


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
    engine: Engine | None = None,
    max_run_seconds: float | None = None,
) -> str:
    """Create an execution and send it to the workers; returns the graph execution id.

    With ``max_run_seconds`` the run ends FAILED once it has been RUNNING that long (the time
    it waits QUEUED for a free slot does not count).
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
    )
    graph_exec_id = create_execution(engine, request)
    try:
        engine.dispatcher.run_graph(graph_exec_id)
    except Exception as exc:
        reason = f"could not publish the run message: {type(exc).__name__}: {exc}"
        with engine.db.session() as session:
            # Only if still QUEUED: the message may have gone out before the error was raised.
            transition_graph(
                session,
                graph_exec_id,
                ExecutionStatus.FAILED,
                allowed_from=frozenset({ExecutionStatus.QUEUED}),
                error=reason,
            )
        raise AutoexecError(f"graph execution {graph_exec_id} failed: {reason}") from exc
    return graph_exec_id


def get_execution(graph_exec_id: str, user_id: str, engine: Engine | None = None) -> ExecutionView:
    """Status, outputs, node executions and stats of one execution."""
    with _engine(engine).db.session() as session:
        execution = repo.get_graph_execution(session, graph_exec_id, user_id)
        nodes = {node.id: node for node in repo.node_executions(session, graph_exec_id)}
        stored = repo.outputs_of_graph_execution(session, graph_exec_id)
        return _view(execution, _graph_outputs(nodes, stored), nodes, _by_node(stored))


def _by_node(stored: list[repo.StoredOutput]) -> dict[int, dict[str, list[Any]]]:
    result: dict[int, dict[str, list[Any]]] = {}
    for output in stored:
        result.setdefault(output.node_exec_id, {}).setdefault(output.name, []).append(output.value)
    return result


def _graph_outputs(
    nodes: dict[int, NodeExecution], stored: list[repo.StoredOutput]
) -> dict[str, list[Any]]:
    """``agent_output`` values by output name, in yield order (SPEC §3.7)."""
    return graph_outputs(
        YieldedOutput(
            nodes[out.node_exec_id].node_id,
            nodes[out.node_exec_id].block_id,
            out.name,
            out.value,
            nodes[out.node_exec_id].input_data or {},
        )
        for out in stored
    )


def _view(
    execution: GraphExecution,
    outputs: dict[str, list[Any]],
    nodes: dict[int, NodeExecution],
    node_outputs: dict[int, dict[str, list[Any]]],
) -> ExecutionView:
    return ExecutionView(
        id=execution.id,
        graph_id=execution.graph_id,
        graph_version=execution.graph_version,
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
    pubsub = engine.coordinator.client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    pubsub.subscribe(Keys.events(graph_exec_id))
    try:
        while True:
            with engine.db.session() as session:
                status = repo.status_of(session, graph_exec_id, user_id)
            remaining = deadline - time.monotonic()
            if status in TERMINAL:
                return get_execution(graph_exec_id, user_id, engine)
            if remaining <= 0:
                raise TimeoutError(
                    f"graph execution {graph_exec_id} still {status.value} after {timeout}s"
                )
            pubsub.get_message(timeout=min(remaining, 0.5))
    finally:
        pubsub.close()


def cancel(graph_exec_id: str, user_id: str, engine: Engine | None = None) -> str:
    """Cancel an execution; cancelling a finished one is a no-op that says so."""
    return cancel_execution(_engine(engine), graph_exec_id, user_id)
