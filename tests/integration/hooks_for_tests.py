"""Engine hooks the hook tests install through AUTOEXEC_HOOKS, in the test process and in
its worker: one records every change, one raises at every call."""

from __future__ import annotations

import json
import os
from typing import Any

from sqlalchemy import select

from autoexec import app
from autoexec.hooks import GraphExecutionChange, Hook, NodeExecutionChange, NodeOutput
from autoexec.store.tables import GraphExecution, NodeExecution, NodeExecutionOutput

LOG_VARIABLE = "AUTOEXEC_TEST_HOOK_LOG"


class Recording(Hook):
    """Appends each change, and whether the database already showed it (so it was called
    after the commit), as one JSON line to the file AUTOEXEC_TEST_HOOK_LOG names."""

    def execution_queued(self, change: GraphExecutionChange) -> None:
        self._graph("execution_queued", change)

    def execution_started(self, change: GraphExecutionChange) -> None:
        self._graph("execution_started", change)

    def execution_ended(self, change: GraphExecutionChange) -> None:
        self._graph("execution_ended", change)

    def node_queued(self, change: NodeExecutionChange) -> None:
        self._node("node_queued", change)

    def node_started(self, change: NodeExecutionChange) -> None:
        self._node("node_started", change)

    def node_ended(self, change: NodeExecutionChange) -> None:
        self._node("node_ended", change)

    def node_output(self, output: NodeOutput) -> None:
        stmt = select(NodeExecutionOutput.value).where(
            NodeExecutionOutput.node_exec_id == output.node.node_exec_id,
            NodeExecutionOutput.seq == output.seq,
        )
        stored = _read(stmt)
        self._write(
            "node_output",
            output.node.graph_exec_id,
            node_id=output.node.node_id,
            node_exec_id=output.node.node_exec_id,
            pin=output.name,
            value=output.value,
            committed=stored == output.value,
        )

    def _graph(self, kind: str, change: GraphExecutionChange) -> None:
        stored = _read(
            select(GraphExecution.status).where(GraphExecution.id == change.graph_exec_id)
        )
        self._write(
            kind,
            change.graph_exec_id,
            status=change.status.value,
            committed=stored == change.status,
        )

    def _node(self, kind: str, change: NodeExecutionChange) -> None:
        node = change.node
        stmt = select(NodeExecution.status).where(NodeExecution.id == node.node_exec_id)
        self._write(
            kind,
            node.graph_exec_id,
            node_id=node.node_id,
            node_exec_id=node.node_exec_id,
            block_id=node.block_id,
            user_id=node.user_id,
            status=change.status.value,
            committed=_read(stmt) == change.status,
        )

    def _write(self, kind: str, graph_exec_id: str, **fields: Any) -> None:
        line = json.dumps({"kind": kind, "graph_exec_id": graph_exec_id, **fields})
        with open(os.environ[LOG_VARIABLE], "a") as log:
            log.write(line + "\n")


def _read(stmt: Any) -> Any:
    # A plain connection, not a Session: no hooks run for this read. Hooks get no engine:
    # the database is that of the process's runtime, which the Celery app holds.
    with app.runtime.database.engine.connect() as connection:
        return connection.execute(stmt).scalar()


class Raising(Hook):
    """Fails at every call."""

    def _fail(self, *_args: Any) -> None:
        raise RuntimeError("this hook always fails")

    execution_queued = execution_started = execution_ended = _fail  # type: ignore[assignment]
    node_queued = node_started = node_ended = node_output = committed = _fail  # type: ignore[assignment]
