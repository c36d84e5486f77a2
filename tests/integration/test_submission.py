"""Submission never leaves a ghost: a run message that cannot be published fails the execution."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
from kombu.exceptions import OperationalError

from autoexec import api
from autoexec.celery_app import app
from autoexec.errors import AutoexecError
from autoexec.statuses import ExecutionStatus
from autoexec.store.executions import NodeTask
from autoexec.store.tables import GraphExecution, NodeExecution
from tests.integration.conftest import Cluster
from tests.integration.test_engine import ADD_ONE


class UnreachableBrokerDispatcher:
    """Publishes through the real Celery app to a broker port where nothing listens."""

    def run_graph(self, graph_exec_id: str) -> None:
        with app.connection_for_write("amqp://guest:guest@127.0.0.1:1//") as conn:
            app.send_task(
                "autoexec.run_graph",
                kwargs={"graph_exec_id": graph_exec_id},
                connection=conn,
                retry=False,
            )

    def advance_graph(self, graph_exec_id: str, countdown: float | None = None) -> None:
        raise AssertionError("not expected")

    def execute_node(self, task: NodeTask) -> None:
        raise AssertionError("not expected")

    def revoke(self, task_ids: list[str]) -> None:
        raise AssertionError("not expected")


def test_unpublishable_run_is_marked_failed_with_the_reason(cluster: Cluster) -> None:
    owner = f"user-{uuid.uuid4().hex[:8]}"
    engine = replace(cluster.engine, dispatcher=UnreachableBrokerDispatcher())
    graph_id, _ = api.save_graph(ADD_ONE, owner, engine=engine)
    with pytest.raises(AutoexecError, match="could not publish the run message") as caught:
        api.execute_graph(graph_id, owner, {"x": 1}, engine=engine)
    assert isinstance(caught.value.__cause__, OperationalError | ConnectionError | OSError)
    with engine.db.session() as session:
        rows = session.query(GraphExecution).filter_by(user_id=owner).all()
        assert [row.status for row in rows] == [ExecutionStatus.FAILED]
        assert rows[0].error is not None and "could not publish" in rows[0].error
        # Its start node will never run: it ends with the execution, not QUEUED forever.
        nodes = session.query(NodeExecution).filter_by(graph_exec_id=rows[0].id).all()
        assert nodes and {node.status for node in nodes} == {ExecutionStatus.TERMINATED}
