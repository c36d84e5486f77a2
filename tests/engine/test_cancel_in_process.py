"""Cancellation: a run's running nodes stop and end TERMINATED; queued work never runs."""

from __future__ import annotations

import threading

from sqlalchemy import update

from autoexec import api
from autoexec.statuses import TERMINAL, ExecutionStatus
from autoexec.store.tables import GraphExecution, utcnow
from autoexec.testing import TestEngine
from tests.graphs import graph, node
from tests.waiting import wait_until

S = ExecutionStatus

SLOW = graph(
    [
        node("stream", "test_slow_stream", count=40, delay=0.1),
        node("calc", "calculator", operation="add", b=1),
        node("out", "agent_output", name="n"),
    ],
    [("stream", "item", "calc", "a"), ("calc", "result", "out", "value")],
)


def items_streamed(t: TestEngine, exec_id: str) -> int:
    view = t.execution(exec_id)
    stream = [n for n in view.node_executions if n.node_id == "stream"]
    return len(stream[0].outputs.get("item", [])) if stream else 0


def test_cancel_stops_a_running_execution(t: TestEngine) -> None:
    exec_id = t.submit(t.save_graph(SLOW))
    worker = threading.Thread(target=t.drain)  # the run goes on while the test cancels
    worker.start()
    try:
        wait_until(lambda: items_streamed(t, exec_id) >= 2, "the stream's first items")
        assert "cancelled" in api.cancel(exec_id, "test-user", engine=t.engine)
    finally:
        worker.join()
    t.drain()
    view = t.execution(exec_id)
    assert view.status is S.TERMINATED
    stream = next(n for n in view.node_executions if n.node_id == "stream")
    assert stream.status is S.TERMINATED
    assert len(stream.outputs.get("item", [])) < 40
    assert all(n.status in TERMINAL for n in view.node_executions)
    assert "already ended TERMINATED" in t.cancel(exec_id)


def test_a_cancel_revokes_the_queued_nodes_of_the_run(t: TestEngine) -> None:
    definition = graph(
        [node("x", "agent_input", name="x")]
        + [node(f"c{i}", "calculator", operation="add", b=i) for i in range(3)],
        [("x", "result", f"c{i}", "a") for i in range(3)],
    )
    exec_id = t.submit(t.save_graph(definition), {"x": 1})
    while not any(n.node_id == "c0" for n in t.dispatcher.nodes()):
        assert t.step() is not None
    assert "cancelled" in t.cancel(exec_id)
    assert t.dispatcher.nodes() == []
    view = t.execution(exec_id)
    assert view.status is S.TERMINATED
    assert {n.node_id: n.status for n in view.node_executions if n.node_id != "x"} == {
        "c0": S.TERMINATED,
        "c1": S.TERMINATED,
        "c2": S.TERMINATED,
    }


def test_a_stored_cancel_request_is_enforced_by_the_next_step(t: TestEngine) -> None:
    # The request reached the database but nothing else (say Redis was down): the next
    # orchestrator step must still end the run TERMINATED, not COMPLETED.
    exec_id = t.submit(t.save_graph(SLOW))
    t.step()  # run_graph: the run starts
    assert t.execution(exec_id).status is S.RUNNING
    with t.engine.db.session() as session:
        session.execute(
            update(GraphExecution)
            .where(GraphExecution.id == exec_id)
            .values(cancel_requested_at=utcnow())
        )
    t.drain()
    assert t.execution(exec_id).status is S.TERMINATED
