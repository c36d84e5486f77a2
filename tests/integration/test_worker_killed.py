"""A worker killed with kill -9 in the middle of a node loses nothing (SPEC §7)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from sqlalchemy import update

from autoexec import api
from autoexec.statuses import ExecutionStatus
from autoexec.store.tables import NodeExecution
from autoexec.tasks import run_graph
from tests.integration.conftest import Cluster, kill_worker, private_queues, worker_process
from tests.integration.test_engine import graph, node
from tests.waiting import wait_until

S = ExecutionStatus

STREAM = graph(
    [
        node("stream", "test_slow_stream", count=6, delay=0.4),
        node("calc", "calculator", operation="multiply", b=10),
        node("out", "agent_output", name="tens"),
    ],
    [("stream", "item", "calc", "a"), ("calc", "result", "out", "value")],
)


def wait_for_outputs(view_of: object, predicate: object, timeout: float = 30) -> None:
    wait_until(lambda: predicate(view_of()), "the stream getting going", timeout)  # type: ignore[operator]


def test_kill_9_mid_node_reruns_it_and_completes_once(cluster: Cluster, tmp_path: Path) -> None:
    owner = f"user-{uuid.uuid4().hex[:8]}"
    with private_queues(cluster) as queues:
        engine = queues.engine
        graph_id, _ = api.save_graph(STREAM, owner, engine=engine)
        with worker_process(queues.env, 2, tmp_path / "first.log", "doomed") as doomed:
            exec_id = api.execute_graph(graph_id, owner, {}, engine=engine)

            def streamed_two(view: api.ExecutionView) -> bool:
                stream = [n for n in view.node_executions if n.node_id == "stream"]
                return bool(stream) and len(stream[0].outputs.get("item", [])) >= 2

            wait_for_outputs(lambda: api.get_execution(exec_id, owner, engine=engine), streamed_two)
            kill_worker(doomed)
        assert api.get_execution(exec_id, owner, engine=engine).status is S.RUNNING
        with worker_process(queues.env, 2, tmp_path / "second.log", "survivor"):
            view = api.wait(exec_id, owner, timeout=90, engine=engine)
    assert view.status is S.COMPLETED
    assert sorted(view.outputs["tens"]) == [0, 10, 20, 30, 40, 50]
    stream = next(n for n in view.node_executions if n.node_id == "stream")
    assert stream.status is S.COMPLETED
    assert stream.attempt == 2
    assert stream.outputs["item"] == [0, 1, 2, 3, 4, 5]
    assert sorted(n.inputs["a"] for n in view.node_executions if n.node_id == "calc") == [
        0, 1, 2, 3, 4, 5,
    ]  # fmt: skip


def test_a_graph_lock_left_by_a_dead_owner_delays_but_does_not_stall(cluster: Cluster) -> None:
    owner = f"user-{uuid.uuid4().hex[:8]}"
    engine = cluster.engine
    graph_id, _ = api.save_graph(STREAM, owner, engine=engine)
    exec_id = str(uuid.uuid4())
    # An owner that took the lock and died: nobody releases it; it expires after 2 s.
    dead_owner = engine.coordinator.graph_lock(exec_id, ttl_seconds=2)
    assert dead_owner.acquire(blocking=False)
    run = run_graph.apply_async(
        kwargs={"graph_id": graph_id, "user_id": owner, "inputs": {}}, task_id=exec_id
    )
    assert run.get(timeout=30) == exec_id
    view = api.wait(exec_id, owner, timeout=60, engine=engine)
    assert view.status is S.COMPLETED
    assert sorted(view.outputs["tens"]) == [0, 10, 20, 30, 40, 50]


def test_a_run_taken_over_by_another_attempt_stops_and_records_nothing(cluster: Cluster) -> None:
    # RabbitMQ may re-deliver a message whose consumer is still alive (consumer_timeout, a lost
    # connection): the new copy bumps the attempt. The old run must stop and change nothing.
    owner = f"user-{uuid.uuid4().hex[:8]}"
    engine = cluster.engine
    definition = graph(
        [node("stream", "test_slow_stream", count=10, delay=0.4)],
        [],
    )
    graph_id, _ = api.save_graph(definition, owner, engine=engine)
    exec_id = api.execute_graph(graph_id, owner, {}, engine=engine)

    def stream_of(view: api.ExecutionView) -> api.NodeExecutionView:
        return next(n for n in view.node_executions if n.node_id == "stream")

    def view() -> api.ExecutionView:
        return api.get_execution(exec_id, owner, engine=engine)

    wait_for_outputs(view, lambda v: len(stream_of(v).outputs.get("item", [])) >= 2)
    with engine.db.session() as session:
        session.execute(
            update(NodeExecution)
            .where(NodeExecution.id == stream_of(view()).id)
            .values(attempt=NodeExecution.attempt + 1)
        )
    taken_over = len(stream_of(view()).outputs["item"])
    time.sleep(5)  # the whole stream would have finished by now
    stream = stream_of(view())
    assert stream.status is S.RUNNING  # the old run did not record an end
    assert stream.attempt == 2
    assert len(stream.outputs["item"]) <= taken_over + 1
    assert "taken over by another attempt" in cluster.worker_log()
    api.cancel(exec_id, owner, engine=engine)
