"""``DataflowStore`` over SQL: the dataflow rules' reads and writes for one graph execution."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Collection
from typing import Any, Protocol

from sqlalchemy import Insert, Text, cast, exists, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from autoexec.blocks.base import ERROR_PIN
from autoexec.graph import Graph, Node
from autoexec.hooks import NodeExecutionChange, NodeRef, note
from autoexec.statuses import ExecutionStatus
from autoexec.store.credits import NodeCharge, Refused
from autoexec.store.executions import NodeTask, append_output, new_task_id
from autoexec.store.statements import bound, run, table
from autoexec.store.tables import NodeExecution, NodeExecutionInput, StaticInput, utcnow
from autoexec.store.transitions import move_node, transition_node

S = ExecutionStatus
_INCOMPLETE_ONLY = frozenset({S.INCOMPLETE})


class DispatchMeter(Protocol):
    """Charges a node before it is queued (``autoexec.metering.DispatchMeter``)."""

    def before_dispatch(self, node: Callable[[], NodeCharge]) -> int | None:
        """The amount charged (``node`` writes the node execution and describes it), or None
        if the run dispatches nothing more; raises ``Refused`` if it cannot be paid."""


class _Free:
    def before_dispatch(self, node: Callable[[], NodeCharge]) -> int | None:
        return 0


class SqlDataflowStore:
    """Runs inside the caller's transaction; the graph-execution lock serializes its users.

    ``recorded_outputs`` counts the outputs this store wrote (the ``error`` of an execution
    failed by the ready check): they are not delivered yet, so the caller must see to it.
    ``queued`` lists the node executions it made QUEUED, each with the Celery task id it was
    given; with ``sent_by`` (the node execution whose task publishes them right after the
    commit) they are also noted as sent, in the same transaction, and their task ids name
    that node execution: a crash in between is recovered by its re-delivered task, which
    re-sends only those (``inline.resend_sent_by``).

    Reads the rules make are skipped where the graph answers them: a node with no static link
    into it has no static inputs, and a node that is not a starting node and whose links all
    end on one pin never has an INCOMPLETE execution lacking that pin (every execution of it
    is created by a delivery on that pin).

    An execution the rules create is written when they settle it (they always do, before the
    next one is looked up): one that is ready at once, with no charge to make, is inserted
    QUEUED in one statement, with its inputs in ``input_data`` and no input rows (those serve
    only INCOMPLETE executions); until then ``create_execution``'s id is provisional
    (negative) and its inputs are kept here. Knowing ``user_id`` (the run's owner) lets that
    insert tell the hooks with no read.
    """

    def __init__(
        self,
        session: Session,
        graph: Graph,
        graph_exec_id: str,
        static_sinks: Collection[str] | None = None,
        sent_by: int | None = None,
        meter: DispatchMeter = _Free(),  # noqa: B008 (stateless)
        user_id: str | None = None,
    ) -> None:
        self.session = session
        self.graph = graph
        self.graph_exec_id = graph_exec_id
        self.static_sinks = static_sinks
        self.sent_by = sent_by
        self.meter = meter
        self.user_id = user_id
        self._unwritten: dict[int, tuple[str, dict[str, Any]]] = {}
        self._written_as: dict[int, int] = {}
        self._static: dict[str, dict[str, Any]] = {}
        self._fresh_inputs: dict[int, dict[str, Any]] = {}
        self.recorded_outputs = 0
        self.queued: list[NodeTask] = []

    def _never_lacking(self, node_id: str, pin: str) -> bool:
        if node_id in self.graph.starting_node_ids:
            return False
        links = self.graph.links_into.get(node_id, [])
        return bool(links) and all(link.sink_name == pin for link in links)

    def _lacking(self, node_id: str, pin: str) -> Any:
        has_pin = exists().where(
            NodeExecutionInput.node_exec_id == NodeExecution.id, NodeExecutionInput.name == pin
        )
        return (
            select(NodeExecution.id)
            .where(
                NodeExecution.graph_exec_id == self.graph_exec_id,
                NodeExecution.node_id == node_id,
                NodeExecution.status == S.INCOMPLETE,
                ~has_pin,
            )
            .order_by(NodeExecution.id)
        )

    def earliest_incomplete_lacking(self, node_id: str, pin: str) -> int | None:
        if self._never_lacking(node_id, pin):
            return None
        found: int | None = self.session.scalar(self._lacking(node_id, pin).limit(1))
        return found

    def incomplete_lacking(self, node_id: str, pin: str) -> list[int]:
        if self._never_lacking(node_id, pin):
            return []
        return list(self.session.scalars(self._lacking(node_id, pin)))

    def create_execution(self, node_id: str) -> int:
        provisional = -(len(self._unwritten) + len(self._written_as) + 1)
        self._unwritten[provisional] = (node_id, {})
        return provisional

    def _write(self, exec_id: int, stats: dict[str, Any] | None = None) -> int:
        """The row of ``exec_id``: an unwritten execution is inserted INCOMPLETE, with its
        input rows (and ``stats``)."""
        if exec_id not in self._unwritten:
            return self._written_as.get(exec_id, exec_id)
        node_id, inputs = self._unwritten.pop(exec_id)
        now = utcnow()
        stmt = (
            insert(NodeExecution)
            .values(
                graph_exec_id=self.graph_exec_id,
                node_id=node_id,
                block_id=self.graph.node(node_id).block_id,
                status=S.INCOMPLETE,
                stats=stats or {},
                attempt=0,
                dispatched=False,
                created_at=now,
                updated_at=now,
            )
            .returning(NodeExecution.id)
        )
        row_id = int(self.session.execute(stmt).scalar_one())
        if inputs:
            rows = [{"node_exec_id": row_id, "name": n, "value": v} for n, v in inputs.items()]
            self.session.execute(insert(NodeExecutionInput), rows)
        self._written_as[exec_id] = row_id
        self._fresh_inputs[row_id] = dict(inputs)
        return row_id

    def add_input(self, exec_id: int, pin: str, value: Any) -> None:
        if exec_id in self._unwritten:
            self._unwritten[exec_id][1][pin] = value
            return
        exec_id = self._written_as.get(exec_id, exec_id)
        self.session.execute(
            insert(NodeExecutionInput).values(node_exec_id=exec_id, name=pin, value=value)
        )
        if exec_id in self._fresh_inputs:
            self._fresh_inputs[exec_id][pin] = value

    def delivered_inputs(self, exec_id: int) -> dict[str, Any]:
        if exec_id in self._unwritten:
            return dict(self._unwritten[exec_id][1])
        exec_id = self._written_as.get(exec_id, exec_id)
        if exec_id in self._fresh_inputs:  # created by this store: its inputs are all here
            return dict(self._fresh_inputs[exec_id])
        stmt = select(NodeExecutionInput.name, NodeExecutionInput.value).where(
            NodeExecutionInput.node_exec_id == exec_id
        )
        return {name: value for name, value in self.session.execute(stmt)}

    def set_static_input(self, node_id: str, pin: str, value: Any) -> None:
        dialect_insert = postgresql.insert if self._dialect() == "postgresql" else sqlite.insert
        stmt = dialect_insert(StaticInput).values(
            graph_exec_id=self.graph_exec_id, node_id=node_id, name=pin, value=value
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["graph_exec_id", "node_id", "name"], set_={"value": value}
        )
        self.session.execute(stmt)
        self._static.pop(node_id, None)

    def static_inputs(self, node_id: str) -> dict[str, Any]:
        if self.static_sinks is not None and node_id not in self.static_sinks:
            return {}
        if node_id not in self._static:
            stmt = select(StaticInput.name, StaticInput.value).where(
                StaticInput.graph_exec_id == self.graph_exec_id, StaticInput.node_id == node_id
            )
            self._static[node_id] = dict(self.session.execute(stmt).all())
        return dict(self._static[node_id])

    def mark_queued(self, exec_id: int, node_id: str, inputs: dict[str, Any]) -> None:
        node = self.graph.node(node_id)
        try:
            cost = self.meter.before_dispatch(
                lambda: NodeCharge(
                    self._write(exec_id), node_id, node.block_id, inputs, node.fan_out
                )
            )
        except Refused as refused:
            self.mark_failed(exec_id, refused.error, inputs)
            return
        if cost is None:
            return  # left INCOMPLETE: the run ends FAILED and terminates it
        stats = {"cost": cost} if cost else {}
        if exec_id in self._unwritten and self.user_id is not None:
            self._insert_queued(exec_id, node, inputs, stats)  # the meter wrote no row
            return
        exec_id = self._write(exec_id)
        task_id = new_task_id(self.sent_by)
        queued = transition_node(
            self.session,
            exec_id,
            S.QUEUED,
            allowed_from=_INCOMPLETE_ONLY,
            input_data=inputs,
            stats=stats,
            celery_task_id=task_id,
            dispatched=self.sent_by is not None,
        )
        if queued:
            self.queued.append(
                NodeTask(exec_id, self.graph_exec_id, task_id, node.id, node.block_id)
            )

    def _insert_queued(
        self, exec_id: int, node: Node, inputs: dict[str, Any], stats: dict[str, Any]
    ) -> None:
        """An execution ready as it is created: one INSERT, QUEUED with its task id."""
        self._unwritten.pop(exec_id)
        now, task_id = utcnow(), new_task_id(self.sent_by)
        params = {
            "p_graph_exec_id": self.graph_exec_id,
            "p_node_id": node.id,
            "p_block_id": node.block_id,
            "p_input_data": inputs,
            "p_stats": stats,
            "p_celery_task_id": task_id,
            "p_dispatched": self.sent_by is not None,
            "p_now": now,
        }
        row_id = int(run(self.session, _queued_insert(), params).scalar_one())
        self._written_as[exec_id] = row_id
        assert self.user_id is not None
        ref = NodeRef(self.graph_exec_id, self.user_id, row_id, node.id, node.block_id)
        note(self.session, NodeExecutionChange(ref, S.QUEUED))
        self.queued.append(NodeTask(row_id, self.graph_exec_id, task_id, node.id, node.block_id))

    def mark_skipped(self, exec_id: int) -> None:
        exec_id = self._write(exec_id)
        transition_node(
            self.session,
            exec_id,
            S.COMPLETED,
            allowed_from=_INCOMPLETE_ONLY,
            stats={"skipped": True},
        )

    def note_not_ready(self, exec_id: int, reason: str) -> None:
        stats = {"waiting": reason}
        if exec_id in self._unwritten:
            self._write(exec_id, stats)
            return
        exec_id = self._written_as.get(exec_id, exec_id)
        # Written only when the reason changed: most deliveries leave it as it was.
        self.session.execute(
            update(NodeExecution)
            .where(NodeExecution.id == exec_id)
            .where(cast(NodeExecution.stats, Text) != json.dumps(stats))
            .values(stats=stats)
        )

    def mark_failed(self, exec_id: int, error: str, inputs: dict[str, Any]) -> None:
        exec_id = self._write(exec_id)
        failed = move_node(
            self.session,
            exec_id,
            S.FAILED,
            allowed_from=_INCOMPLETE_ONLY,
            input_data=inputs,
            stats={"error": error},
            error=error,
        )
        if failed is not None:
            append_output(self.session, failed, 0, ERROR_PIN, error)
            self.recorded_outputs += 1

    def _dialect(self) -> str:
        return self.session.get_bind().dialect.name


@functools.cache
def _queued_insert() -> Insert:
    """The INSERT of a node execution that is ready as it is created: QUEUED, with its inputs
    and task id."""
    nodes = table(NodeExecution)
    named = (
        "graph_exec_id", "node_id", "block_id", "input_data", "stats",
        "celery_task_id", "dispatched",
    )  # fmt: skip
    now = bound(nodes.c.created_at, "now")
    return (
        insert(nodes)
        .values(
            **{name: bound(nodes.c[name]) for name in named},
            status=ExecutionStatus.QUEUED,
            attempt=0,
            created_at=now,
            queued_at=now,
            updated_at=now,
        )
        .returning(nodes.c.id)
    )
