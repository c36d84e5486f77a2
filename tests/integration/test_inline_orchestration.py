"""A node task delivers its own outputs and sends its successors (no orchestrator step on the
way); what a crash leaves half done is finished by ``advance_graph``, once."""

from __future__ import annotations

import contextlib
import threading
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from autoexec import api
from autoexec.engine import output_buffer
from autoexec.engine.admission import admit
from autoexec.engine.node_execution import execute_node
from autoexec.engine.orchestrator import advance
from autoexec.statuses import ExecutionStatus
from autoexec.store import executions as repo
from autoexec.store.tables import NodeExecution, NodeExecutionInput, NodeExecutionOutput
from autoexec.testing import InMemoryDispatcher
from tests.integration.conftest import Cluster, kill_worker, private_queues, worker_process
from tests.integration.test_engine import graph, node, user
from tests.integration.test_worker_killed import wait_for_outputs

S = ExecutionStatus


def run_sent(steps: InMemoryDispatcher, engine: Any) -> None:
    """Run every node sent, and the ones they send, until none is left."""
    while nodes := steps.take_nodes():
        for node_exec_id in nodes:
            execute_node(engine, node_exec_id)


def start(engine: Any, definition: dict[str, Any], inputs: dict[str, Any]) -> tuple[str, str]:
    owner = user()
    graph_id, _ = api.save_graph(definition, owner, engine=engine)
    exec_id = api.execute_graph(graph_id, owner, inputs, engine=engine)
    assert admit(engine, exec_id)
    advance(engine, exec_id)
    return exec_id, owner


TWO_INTO_ONE = graph(
    [
        node("a", "agent_input", name="a"),
        node("b", "agent_input", name="b"),
        node("calc", "calculator", operation="add"),
        node("out", "agent_output", name="sum"),
    ],
    [
        ("a", "result", "calc", "a"),
        ("b", "result", "calc", "b"),
        ("calc", "result", "out", "value"),
    ],
)


def test_two_nodes_ending_at_once_into_one_two_input_node_run_it_once(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """a and b end together, and an orchestrator step runs at the same moment: each output
    is delivered once and one calc execution runs."""
    monkeypatch.setattr(output_buffer, "WINDOW_SECONDS", 60.0)  # one locked transaction each
    steps = InMemoryDispatcher()
    engine = replace(cluster.engine, dispatcher=steps)
    exec_id, owner = start(engine, TWO_INTO_ONE, {"a": 2, "b": 3})
    first, second = steps.take_nodes()
    together = threading.Barrier(3, timeout=10)
    take_row_lock = repo.get_execution_state

    def at_once(session: Any, graph_exec_id: str, lock: bool = False) -> Any:
        if lock and graph_exec_id == exec_id and not together.broken:
            with contextlib.suppress(threading.BrokenBarrierError):
                together.wait()
        return take_row_lock(session, graph_exec_id, lock)

    monkeypatch.setattr(repo, "get_execution_state", at_once)
    threads = [
        threading.Thread(target=execute_node, args=(engine, first)),
        threading.Thread(target=execute_node, args=(engine, second)),
        threading.Thread(target=advance, args=(engine, exec_id)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    monkeypatch.undo()
    run_sent(steps, engine)

    view = api.get_execution(exec_id, owner, engine=engine)
    assert view.status is S.COMPLETED
    assert view.outputs == {"sum": [5]}
    calc = [n for n in view.node_executions if n.node_id == "calc"]
    assert [(n.status, n.attempt) for n in calc] == [(S.COMPLETED, 1)]
    with engine.db.session() as session:
        delivered_inputs = session.scalar(
            select(func.count()).where(NodeExecutionInput.node_exec_id == calc[0].id)
        )
    assert delivered_inputs == 2


FAST_STREAM = graph(
    [
        node("stream", "test_slow_stream", count=400, delay=0.005),
        node("calc", "calculator", operation="multiply", b=10),
        node("out", "agent_output", name="tens"),
    ],
    [("stream", "item", "calc", "a"), ("calc", "result", "out", "value")],
)


def test_kill_9_in_a_batch_of_yields_loses_and_doubles_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    owner = f"user-{uuid.uuid4().hex[:8]}"
    with private_queues(cluster) as queues:
        engine = queues.engine
        graph_id, _ = api.save_graph(FAST_STREAM, owner, engine=engine)
        with worker_process(queues.env, 2, tmp_path / "first.log", "doomed") as doomed:
            exec_id = api.execute_graph(graph_id, owner, {}, engine=engine)

            def streaming(view: api.ExecutionView) -> bool:
                stream = [n for n in view.node_executions if n.node_id == "stream"]
                return bool(stream) and len(stream[0].outputs.get("item", [])) >= 100

            wait_for_outputs(lambda: api.get_execution(exec_id, owner, engine=engine), streaming)
            kill_worker(doomed)
        with worker_process(queues.env, 2, tmp_path / "second.log", "survivor"):
            view = api.wait(exec_id, owner, timeout=120, engine=engine)
    assert view.status is S.COMPLETED
    assert sorted(view.outputs["tens"]) == [10 * i for i in range(400)]
    stream = next(n for n in view.node_executions if n.node_id == "stream")
    assert stream.outputs["item"] == list(range(400))
    assert stream.attempt == 2
    with engine.db.session() as session:
        undelivered = session.scalar(
            select(func.count()).where(
                NodeExecutionOutput.graph_exec_id == exec_id, ~NodeExecutionOutput.delivered
            )
        )
        calcs = session.scalar(
            select(func.count()).where(
                NodeExecution.graph_exec_id == exec_id, NodeExecution.node_id == "calc"
            )
        )
    assert (undelivered, calcs) == (0, 400)
