"""Runs that could never end on their own: a block missing on the worker, a loop with no end,
a node blocking past the run's deadline; and a run_graph message that names no graph."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import pytest
from celery.result import AsyncResult
from sqlalchemy import func, select

from autoexec import api
from autoexec.celery_app import app
from autoexec.engine.context import Engine
from autoexec.errors import InputValidationError
from autoexec.statuses import ExecutionStatus
from autoexec.store.tables import GraphExecution
from tests.integration.conftest import (
    Cluster,
    private_queues,
    single_slot_worker,
    worker_process,
)
from tests.integration.test_engine import EXAMPLES, graph, node, user

S = ExecutionStatus
NOT_ENDED = {S.QUEUED, S.RUNNING, S.INCOMPLETE}


def run_on_worker(
    cluster: Cluster,
    log_path: Path,
    worker_env: dict[str, str],
    definition: dict[str, object],
    inputs: dict[str, object],
) -> api.ExecutionView:
    """Submit from this process (which has the test blocks) to a worker of its own,
    configured with ``worker_env``, and wait for the end."""
    owner = user()
    with private_queues(cluster) as queues:
        env = {**queues.env, **worker_env}
        with worker_process(env, 1, log_path, f"limits-{secrets.token_hex(4)}"):
            graph_id, _ = api.save_graph(definition, owner, engine=queues.engine)
            exec_id = api.execute_graph(graph_id, owner, inputs, engine=queues.engine)
            return api.wait(exec_id, owner, timeout=60, engine=queues.engine)


WITHOUT_TEST_BLOCKS = {"AUTOEXEC_BLOCK_MODULES": ""}


def missing_block_message(node_id: str) -> str:
    return f"block 'test_shout' of node {node_id!r} is not registered on worker "


HOW_TO_REGISTER = (
    ": list its module in AUTOEXEC_BLOCK_MODULES or install its package "
    "(entry point group autoexec.blocks) on every worker"
)


def test_a_start_node_whose_block_the_worker_lacks_fails_the_run(
    cluster: Cluster, tmp_path: Path
) -> None:
    definition = graph(
        [node("loud", "test_shout", text="hi"), node("out", "agent_output", name="said")],
        [("loud", "result", "out", "value")],
    )
    view = run_on_worker(cluster, tmp_path / "w.log", WITHOUT_TEST_BLOCKS, definition, {})
    assert view.status is S.FAILED
    assert view.error is not None
    assert view.error.startswith(missing_block_message("loud"))
    assert view.error.endswith(HOW_TO_REGISTER)
    loud = [n for n in view.node_executions if n.node_id == "loud"]
    assert [(n.status, n.error) for n in loud] == [(S.FAILED, view.error)]
    assert not NOT_ENDED & {n.status for n in view.node_executions}


def test_a_downstream_block_the_worker_lacks_fails_the_run(
    cluster: Cluster, tmp_path: Path
) -> None:
    definition = graph(
        [node("x", "agent_input", name="x"), node("loud", "test_shout")],
        [("x", "result", "loud", "text")],
    )
    view = run_on_worker(cluster, tmp_path / "w.log", WITHOUT_TEST_BLOCKS, definition, {"x": "a"})
    assert view.status is S.FAILED
    assert view.error is not None
    assert view.error.startswith(missing_block_message("loud"))
    assert view.error.endswith(HOW_TO_REGISTER)
    assert {n.node_id: n.status for n in view.node_executions} == {"x": S.COMPLETED}


def test_a_loop_stops_at_the_node_execution_limit(cluster: Cluster, tmp_path: Path) -> None:
    definition = json.loads((EXAMPLES / "count_loop.json").read_text())
    limit = {"AUTOEXEC_MAX_NODE_EXECUTIONS_PER_RUN": "20"}
    view = run_on_worker(cluster, tmp_path / "w.log", limit, definition, {"limit": 1_000_000})
    assert view.status is S.FAILED
    assert view.error == (
        "stopped after 20 node executions: the limit is AUTOEXEC_MAX_NODE_EXECUTIONS_PER_RUN=20"
    )
    statuses = [n.status for n in view.node_executions]
    assert not NOT_ENDED & set(statuses)
    assert statuses.count(S.COMPLETED) <= 20
    assert S.TERMINATED in statuses  # the 21st was stopped before it ran


def test_a_loop_of_failing_ready_checks_stops_at_the_node_execution_limit(
    cluster: Cluster, tmp_path: Path
) -> None:
    """No worker ever runs a node here: each execution fails its ready check and its error
    loops back into the same pin. Those executions count towards the limit too."""
    definition = graph(
        [
            node("text", "store_value", input="abc"),
            node("calc", "calculator", operation="add", b=1),
        ],
        [("text", "output", "calc", "a"), ("calc", "error", "calc", "a")],
    )
    limit = {"AUTOEXEC_MAX_NODE_EXECUTIONS_PER_RUN": "20"}
    view = run_on_worker(cluster, tmp_path / "w.log", limit, definition, {})
    assert view.status is S.FAILED
    assert view.error == (
        "stopped after 20 node executions: the limit is AUTOEXEC_MAX_NODE_EXECUTIONS_PER_RUN=20"
    )
    assert not NOT_ENDED & {n.status for n in view.node_executions}
    assert sum(n.status is S.FAILED for n in view.node_executions) >= 20


def wait_until_not_running(engine: Engine, exec_id: str, owner: str) -> api.ExecutionView:
    deadline = time.monotonic() + 20
    view = api.get_execution(exec_id, owner, engine=engine)
    while S.RUNNING in {n.status for n in view.node_executions} and time.monotonic() < deadline:
        time.sleep(0.2)
        view = api.get_execution(exec_id, owner, engine=engine)
    return view


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


def test_a_node_blocking_past_the_deadline_is_stopped(cluster: Cluster) -> None:
    assert_stopped_at_the_deadline(cluster.engine)


def test_the_deadline_holds_when_the_blocking_node_has_the_only_worker_slot(
    cluster: Cluster, tmp_path: Path
) -> None:
    with single_slot_worker(cluster, tmp_path / "single.log") as engine:
        assert_stopped_at_the_deadline(engine)


def executions_of(engine: Engine, owner: str) -> int:
    with engine.db.session() as session:
        stmt = select(func.count()).where(GraphExecution.user_id == owner)
        return session.scalar(stmt) or 0


@pytest.mark.parametrize("seconds", [0, -1, float("inf"), "5"])
def test_a_bad_run_deadline_is_refused_and_queues_nothing(
    cluster: Cluster, seconds: object
) -> None:
    owner = user()
    definition = graph([node("nap", "wait", seconds=0)], [])
    graph_id, _ = api.save_graph(definition, owner, engine=cluster.engine)
    with pytest.raises(InputValidationError, match="max_run_seconds must be"):
        api.execute_graph(graph_id, owner, engine=cluster.engine, max_run_seconds=seconds)  # type: ignore[arg-type]
    assert executions_of(cluster.engine, owner) == 0


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


def test_a_run_stopped_at_its_deadline_hands_its_slot_on(cluster: Cluster, tmp_path: Path) -> None:
    owner = user()
    napping = graph([node("nap", "wait", seconds=3600)], [])
    adding = graph(
        [node("x", "agent_input", name="x"), node("out", "agent_output", name="x")],
        [("x", "result", "out", "value")],
    )
    one_slot = {"AUTOEXEC_MAX_CONCURRENT_RUNS_PER_USER": "1"}
    with private_queues(cluster) as queues:
        env = {**queues.env, **one_slot}
        with worker_process(env, 2, tmp_path / "w.log", f"slots-{secrets.token_hex(4)}"):
            nap_id, _ = api.save_graph(napping, owner, engine=queues.engine)
            add_id, _ = api.save_graph(adding, owner, engine=queues.engine)
            first = api.execute_graph(nap_id, owner, engine=queues.engine, max_run_seconds=2)
            second = api.execute_graph(add_id, owner, {"x": 7}, engine=queues.engine)
            ended = [api.wait(e, owner, timeout=60, engine=queues.engine) for e in (first, second)]
    assert [v.status for v in ended] == [S.FAILED, S.COMPLETED]
    assert ended[1].outputs == {"x": [7]}
