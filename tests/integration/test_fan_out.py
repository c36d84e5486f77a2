"""Fan-out (SPEC §8.3) on the real cluster: a node with ``fan_out`` runs its block once per
element as one Celery chord, and yields each output pin gathered in element order, once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kombu import Connection

from autoexec import api
from autoexec.engine.context import Engine
from autoexec.statuses import ExecutionStatus
from tests.integration.conftest import Cluster, private_queues, worker_process
from tests.integration.test_engine import graph, node, user
from tests.integration.test_reviews import node_status
from tests.waiting import wait_for_status, wait_until

S = ExecutionStatus


def fanned(operation: str, error_handled: bool = False) -> dict[str, Any]:
    calc = {**node("calc", "calculator", operation=operation, a=2), "fan_out": "b"}
    links = [("x", "result", "calc", "b"), ("calc", "result", "out", "value")]
    nodes = [node("x", "agent_input", name="b"), calc, node("out", "agent_output", name="r")]
    if error_handled:
        nodes.append(node("err", "agent_output", name="error"))
        links.append(("calc", "error", "err", "value"))
    return graph(nodes, links)


def run(engine: Engine, definition: dict[str, Any], inputs: dict[str, Any]) -> api.ExecutionView:
    owner = user()
    graph_id, _ = api.save_graph(definition, owner, engine=engine)
    exec_id = api.execute_graph(graph_id, owner, inputs, engine=engine)
    return api.wait(exec_id, owner, timeout=120, engine=engine)


def calc_node(view: api.ExecutionView) -> api.NodeExecutionView:
    [calc] = [n for n in view.node_executions if n.node_id == "calc"]
    return calc


def test_twenty_elements_are_gathered_in_element_order(cluster: Cluster) -> None:
    view = run(cluster.engine, fanned("multiply"), {"b": list(range(20))})

    assert view.status is S.COMPLETED, cluster.worker_log()[-3000:]
    assert view.outputs == {"r": [[2 * b for b in range(20)]]}
    calc = calc_node(view)
    assert (calc.status, calc.outputs) == (S.COMPLETED, {"result": [[2 * b for b in range(20)]]})


def touching(gate: Path, markers: Path) -> dict[str, Any]:
    touch = node("touch", "test_gated_touch", gate=str(gate), marker_dir=str(markers))
    return graph(
        [node("x", "agent_input", name="names"), {**touch, "fan_out": "name"}],
        [("x", "result", "touch", "name")],
    )


def node_queue_length(engine: Engine) -> int:
    with Connection(engine.settings.broker_url) as conn:
        declared = conn.channel().queue_declare(engine.settings.node_queue, passive=True)
        return int(declared.message_count)


def test_a_cancelled_fan_out_ends_terminated_and_runs_no_element_afterwards(
    cluster: Cluster, tmp_path: Path
) -> None:
    gate, markers = tmp_path / "gate", tmp_path / "markers"
    markers.mkdir()
    owner = user()
    with private_queues(cluster) as queues:
        engine = queues.engine
        with worker_process(queues.env, 2, tmp_path / "a.log", "fan-out-a"):
            graph_id, _ = api.save_graph(touching(gate, markers), owner, engine=engine)
            names = [f"e{index}" for index in range(20)]
            exec_id = api.execute_graph(graph_id, owner, {"names": names}, engine=engine)
            view = wait_for_status(engine, exec_id, owner, S.WAITING)
            assert node_status(view, "touch") is S.WAITING
            assert "cancelled" in api.cancel(exec_id, owner, engine=engine)
        gate.touch()  # an element that ran on now would leave a marker
        # A worker started after the cancel never heard of the revocation: the elements
        # still queued reach it, and must not run the block either.
        with worker_process(queues.env, 2, tmp_path / "b.log", "fan-out-b"):
            wait_until(lambda: node_queue_length(engine) == 0, "the element tasks consumed")
        assert node_queue_length(engine) == 0  # the worker's stop requeued nothing
        view = api.get_execution(exec_id, owner, engine=engine)
    assert view.status is S.TERMINATED
    [touch] = [n for n in view.node_executions if n.node_id == "touch"]
    assert (touch.status, touch.outputs) == (S.TERMINATED, {})
    assert list(markers.iterdir()) == []
