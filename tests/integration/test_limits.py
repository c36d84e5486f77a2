"""Runs that could never end on their own: a block missing on the worker, a loop with no end,
a node blocking past the run's deadline; and a run_graph message that names no graph."""

from __future__ import annotations

from pathlib import Path

import pytest
from celery.result import AsyncResult

from autoexec import api
from autoexec.celery_app import app
from autoexec.engine.context import Engine
from autoexec.statuses import ExecutionStatus
from tests.integration.conftest import (
    Cluster,
    single_slot_worker,
)
from tests.integration.test_engine import graph, node, user
from tests.waiting import wait_until

S = ExecutionStatus
NOT_ENDED = {S.QUEUED, S.RUNNING, S.INCOMPLETE}


def wait_until_not_running(engine: Engine, exec_id: str, owner: str) -> api.ExecutionView:
    def stopped() -> api.ExecutionView | None:
        view = api.get_execution(exec_id, owner, engine=engine)
        return None if S.RUNNING in {n.status for n in view.node_executions} else view

    return wait_until(stopped, f"the nodes of {exec_id} stopped", timeout=20)


def assert_stopped_at_the_deadline(engine: Engine) -> None:
    owner = user()
    definition = graph([node("nap", "wait", seconds=3600, data="late")], [])
    graph_id, _ = api.save_graph(definition, owner, engine=engine)
    exec_id = api.execute_graph(graph_id, owner, {}, engine=engine, max_run_seconds=2)
    view = api.wait(exec_id, owner, timeout=60, engine=engine)
    assert view.status is S.FAILED
    assert view.error == "stopped: ran longer than max_run_seconds=2"
    view = wait_until_not_running(engine, exec_id, owner)
    assert [(n.node_id, n.status) for n in view.node_executions] == [("nap", S.TERMINATED)]
    assert view.outputs == {}


def test_the_deadline_holds_when_the_blocking_node_has_the_only_worker_slot(
    cluster: Cluster, tmp_path: Path
) -> None:
    with single_slot_worker(cluster, tmp_path / "single.log") as engine:
        assert_stopped_at_the_deadline(engine)


@pytest.mark.parametrize("kwargs", [{}, {"graph_id": "g"}, {"user_id": "u", "inputs": {}}])
def test_run_graph_without_a_graph_fails_the_task(
    cluster: Cluster, kwargs: dict[str, object]
) -> None:
    result: AsyncResult[object] = app.send_task(
        "autoexec.run_graph", kwargs=kwargs, queue=cluster.inbox_queue
    )
    with pytest.raises(Exception, match="run_graph needs graph_exec_id, or graph_id and user_id"):
        result.get(timeout=30)
    assert result.state == "FAILURE"
    assert type(result.result).__name__ == "InputValidationError"


def test_run_graph_by_id_refuses_options_it_would_ignore(cluster: Cluster) -> None:
    kwargs = {"graph_exec_id": "some-id", "max_run_seconds": 5, "inputs": {"x": 1}}
    result: AsyncResult[object] = app.send_task(
        "autoexec.run_graph", kwargs=kwargs, queue=cluster.inbox_queue
    )
    message = (
        "run_graph with graph_exec_id starts that execution as submitted; "
        "leave out inputs, max_run_seconds"
    )
    with pytest.raises(Exception, match=message):
        result.get(timeout=30)
    assert result.state == "FAILURE"


def test_run_graph_by_name_takes_a_run_deadline(cluster: Cluster) -> None:
    owner = user()
    definition = graph([node("nap", "wait", seconds=3600)], [])
    graph_id, _ = api.save_graph(definition, owner, engine=cluster.engine)
    kwargs = {"graph_id": graph_id, "user_id": owner, "max_run_seconds": 1.5}
    result: AsyncResult[str] = app.send_task(
        "autoexec.run_graph", kwargs=kwargs, queue=cluster.inbox_queue
    )
    exec_id = result.get(timeout=30)
    view = api.wait(exec_id, owner, timeout=60, engine=cluster.engine)
    assert view.status is S.FAILED
    assert view.error == "stopped: ran longer than max_run_seconds=1.5"
