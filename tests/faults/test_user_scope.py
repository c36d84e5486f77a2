"""Tasks callable by name from any app (issue 8 item 7): ``autoexec.cancel_graph`` acts only for
the execution's owner, and input values sent to ``autoexec.run_graph`` never show in task
events (what Flower displays)."""

from __future__ import annotations

from typing import Any

import pytest

from autoexec import api
from autoexec.celery_app import app
from autoexec.errors import InputValidationError, NotFoundError
from autoexec.statuses import ExecutionStatus
from autoexec.store.tables import GraphExecution
from autoexec.tasks import run_graph
from tests.integration.conftest import Cluster
from tests.integration.test_engine import ADD_ONE, graph, node, user
from tests.integration.test_task_events import send_from_plain_celery, task_events
from tests.waiting import wait_for_status

S = ExecutionStatus
SECRET = 918273645  # an input value that must not leave the run

STREAM = graph(
    [
        node("stream", "test_slow_stream", count=20, delay=0.5),
        node("out", "agent_output", name="n"),
    ],
    [("stream", "item", "out", "value")],
)


def start_stream(cluster: Cluster) -> tuple[str, str]:
    owner = user()
    graph_id, _ = api.save_graph(STREAM, owner, engine=cluster.engine)
    exec_id = api.execute_graph(graph_id, owner, {}, engine=cluster.engine)
    wait_for_status(cluster.engine, exec_id, owner, S.RUNNING, timeout=30)
    return owner, exec_id


def cancel_by_name(**kwargs: Any) -> str:
    return str(app.send_task("autoexec.cancel_graph", kwargs=kwargs).get(timeout=30))


def assert_not_cancelled(cluster: Cluster, exec_id: str) -> None:
    with cluster.engine.db.session() as session:
        execution = session.get(GraphExecution, exec_id)
        assert execution is not None
        assert execution.cancel_requested_at is None
        assert execution.status is S.RUNNING


def test_cancel_graph_by_name_acts_only_for_the_owner(cluster: Cluster) -> None:
    owner, exec_id = start_stream(cluster)
    with pytest.raises(InputValidationError, match="cancel_graph needs user_id"):
        cancel_by_name(graph_exec_id=exec_id)
    assert_not_cancelled(cluster, exec_id)
    with pytest.raises(NotFoundError, match=f"graph execution '{exec_id}' not found"):
        cancel_by_name(graph_exec_id=exec_id, user_id=user())
    assert_not_cancelled(cluster, exec_id)
    assert cancel_by_name(graph_exec_id=exec_id, user_id=owner).endswith("cancelled")
    view = api.wait(exec_id, owner, timeout=30, engine=cluster.engine)
    assert view.status is S.TERMINATED


def test_input_values_never_show_in_task_events(cluster: Cluster) -> None:
    owner = user()
    graph_id, _ = api.save_graph(ADD_ONE, owner, engine=cluster.engine)
    kwargs = {"graph_id": graph_id, "user_id": owner, "inputs": {"x": SECRET}}
    with task_events() as events:
        own = str(run_graph.apply_async(kwargs=kwargs).get(timeout=30))
        plain = send_from_plain_celery(cluster, kwargs)
        for exec_id in (own, plain):
            view = api.wait(exec_id, owner, timeout=60, engine=cluster.engine)
            assert (view.status, view.outputs) == (S.COMPLETED, {"sum": [SECRET + 1]})
    shown = [e for e in events if e["uuid"] in (own, plain)]
    # Both sends were seen by the worker, and autoexec's own send by its task-sent event too.
    assert sorted((e["type"], e["uuid"]) for e in shown) == sorted(
        [("task-sent", own), ("task-received", own), ("task-received", plain)]
    )
    for event in shown:
        assert str(SECRET) not in repr(event)
        assert "'inputs': ['x']" in event["kwargs"]
    assert str(SECRET) not in repr(events)  # nor in any node's events


def test_a_refused_input_value_shows_in_the_result_not_in_task_events(cluster: Cluster) -> None:
    owner = user()
    graph_id, _ = api.save_graph(ADD_ONE, owner, engine=cluster.engine)
    refused = f"not-a-number-{SECRET}"
    kwargs = {"graph_id": graph_id, "user_id": owner, "inputs": {"x": refused}}
    with task_events(("*",)) as events:
        sent = run_graph.apply_async(kwargs=kwargs)
        # The caller is told exactly what was wrong ...
        with pytest.raises(InputValidationError, match=refused):
            sent.get(timeout=30)
    # ... and monitoring that it failed and how, without the value.
    failed = [e for e in events if e["uuid"] == sent.id and e["type"] == "task-failed"]
    assert len(failed) == 1
    assert failed[0]["exception"].startswith("InputValidationError(hidden from task events")
    assert str(SECRET) not in repr([e for e in events if e.get("uuid") == sent.id])
