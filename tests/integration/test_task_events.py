"""What monitoring (Flower) sees of a run: the task events the worker and the orchestrator
send on the real broker."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery
from celery.events.receiver import EventReceiver
from sqlalchemy import select

from autoexec import api
from autoexec.celery_app import app
from autoexec.statuses import ExecutionStatus
from autoexec.store.tables import NodeExecution
from tests.integration.conftest import Cluster
from tests.integration.test_engine import ADD_ONE, user

S = ExecutionStatus
EVENT_TYPES = ("task-sent", "task-received")


class ReadyReceiver(EventReceiver):
    """An event receiver that says when its queue is bound (events before that are lost)."""

    ready = threading.Event()

    def on_consume_ready(self, *args: Any, **kwargs: Any) -> None:
        super().on_consume_ready(*args, **kwargs)
        self.ready.set()


@contextmanager
def task_events(kinds: Iterable[str] = EVENT_TYPES) -> Iterator[list[dict[str, Any]]]:
    """Every task event of ``kinds`` (``"*"``: all) on the broker while the block runs."""
    events: list[dict[str, Any]] = []
    with app.connection_for_read() as connection:
        receiver = ReadyReceiver(connection, handlers=dict.fromkeys(kinds, events.append), app=app)
        receiver.ready = threading.Event()
        thread = threading.Thread(target=receiver.capture, kwargs={"wakeup": False}, daemon=True)
        thread.start()
        assert receiver.ready.wait(10), "the event receiver did not start"
        try:
            yield events
            time.sleep(1.0)  # events of the last tasks are still on their way
        finally:
            receiver.should_stop = True
            thread.join(10)


def send_from_plain_celery(cluster: Cluster, kwargs: dict[str, Any]) -> str:
    """``autoexec.run_graph`` sent by name from an app that knows nothing of autoexec (and
    sends no task-sent event); the execution id."""
    settings = cluster.engine.settings
    client = Celery(broker=settings.broker_url, backend=settings.effective_result_backend)
    try:
        sent = client.send_task("autoexec.run_graph", kwargs=kwargs, queue=cluster.inbox_queue)
        return str(sent.get(timeout=30))
    finally:
        client.close()


def test_execute_node_events_name_the_node_and_the_block(cluster: Cluster) -> None:
    owner = user()
    graph_id, _ = api.save_graph(ADD_ONE, owner, engine=cluster.engine)
    with task_events() as events:
        exec_id = api.execute_graph(graph_id, owner, {"x": 41}, engine=cluster.engine)
        assert api.wait(exec_id, owner, timeout=60, engine=cluster.engine).status is S.COMPLETED
    with cluster.engine.db.session() as session:
        rows = session.execute(
            select(NodeExecution.id, NodeExecution.celery_task_id, NodeExecution.node_id).where(
                NodeExecution.graph_exec_id == exec_id
            )
        ).all()
    blocks = {"x": "agent_input", "calc": "calculator", "out": "agent_output"}
    expected = {
        task_id: f"({node_exec_id}, {exec_id!r}, node={node_id!r}, block={blocks[node_id]!r})"
        for node_exec_id, task_id, node_id in rows
    }
    for kind in EVENT_TYPES:
        of_kind = [e for e in events if e["type"] == kind and e["uuid"] in expected]
        shown = {e["uuid"]: e["args"] for e in of_kind}
        assert shown == expected, kind
