"""Fan-out (SPEC §8.3): a node with ``fan_out`` runs its block once per element, and yields
each output pin gathered in element order, once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from autoexec import api
from autoexec.engine.reconciler import reconcile
from autoexec.engine.suspensions import fan_out
from autoexec.statuses import ExecutionStatus
from autoexec.store.fan_out_elements import ElementResult, record_element
from autoexec.testing import FAN_OUT_ELEMENT, GATHER_FAN_OUT, TestEngine
from tests.graphs import fanned_out, graph, node

S = ExecutionStatus


def fanned(operation: str, error_handled: bool = False) -> dict[str, Any]:
    calc = fanned_out(node("calc", "calculator", operation=operation, a=2), "b")
    links = [("x", "result", "calc", "b"), ("calc", "result", "out", "value")]
    nodes = [node("x", "agent_input", name="b"), calc, node("out", "agent_output", name="r")]
    if error_handled:
        nodes.append(node("err", "agent_output", name="error"))
        links.append(("calc", "error", "err", "value"))
    return graph(nodes, links)


def calc_node(view: api.ExecutionView) -> api.NodeExecutionView:
    [calc] = [n for n in view.node_executions if n.node_id == "calc"]
    return calc


def test_twenty_elements_are_gathered_in_element_order(t: TestEngine) -> None:
    view = t.run(t.save_graph(fanned("multiply")), {"b": list(range(20))})
    assert view.status is S.COMPLETED
    assert view.outputs == {"r": [[2 * b for b in range(20)]]}
    calc = calc_node(view)
    assert (calc.status, calc.outputs) == (S.COMPLETED, {"result": [[2 * b for b in range(20)]]})
    elements = [job for job in t.dispatcher.sent if job.kind == FAN_OUT_ELEMENT]
    assert len(elements) == 20


def test_one_failed_element_fails_the_node_naming_its_index(t: TestEngine) -> None:
    divisors = [1 + b for b in range(50)]
    divisors[37] = 0
    view = t.run(t.save_graph(fanned("divide")), {"b": divisors})
    assert view.status is S.FAILED
    calc = calc_node(view)
    assert calc.status is S.FAILED
    assert calc.error is not None and calc.error.startswith("fan-out element 37 failed: ")
    assert calc.outputs == {"error": [calc.error]}  # no gathered result on a failure
    assert view.error == calc.error


def test_a_failed_element_on_a_linked_error_pin_lets_the_run_complete(t: TestEngine) -> None:
    view = t.run(t.save_graph(fanned("divide", error_handled=True)), {"b": [1, 0, 2]})
    assert view.status is S.COMPLETED
    [error] = view.outputs["error"]
    assert error.startswith("fan-out element 1 failed: ")
    assert "r" not in view.outputs


def test_an_empty_list_yields_an_empty_list_on_each_output_pin(t: TestEngine) -> None:
    view = t.run(t.save_graph(fanned("multiply")), {"b": []})
    assert view.status is S.COMPLETED
    assert view.outputs == {"r": [[]]}
    assert calc_node(view).outputs == {"result": [[]]}
    assert not [job for job in t.dispatcher.sent if job.kind == FAN_OUT_ELEMENT]


def test_a_cancelled_fan_out_ends_terminated_and_runs_no_element_afterwards(
    t: TestEngine, tmp_path: Path
) -> None:
    gate, markers = tmp_path / "gate", tmp_path / "markers"
    markers.mkdir()
    touch = node("touch", "test_gated_touch", gate=str(gate), marker_dir=str(markers))
    definition = graph(
        [node("x", "agent_input", name="names"), fanned_out(touch, "name")],
        [("x", "result", "touch", "name")],
    )
    names = [f"e{index}" for index in range(20)]
    exec_id = t.submit(t.save_graph(definition), {"names": names})
    while not any(job.kind == FAN_OUT_ELEMENT for job in t.dispatcher.queued):
        assert t.step() is not None
    assert t.execution(exec_id).status is S.WAITING
    # Elements already taken by a worker that never heard of the revocation.
    taken = [job for job in t.dispatcher.queued if job.kind == FAN_OUT_ELEMENT][:3]
    assert "cancelled" in t.cancel(exec_id)
    assert not [job for job in t.dispatcher.queued if job.kind == FAN_OUT_ELEMENT]
    gate.touch()  # an element that ran its block now would leave a marker
    for job in taken:
        t.perform(job)  # must not run the block
    t.drain()
    view = t.execution(exec_id)
    assert view.status is S.TERMINATED
    [touched] = [n for n in view.node_executions if n.node_id == "touch"]
    assert (touched.status, touched.outputs) == (S.TERMINATED, {})
    assert list(markers.iterdir()) == []


def test_a_fan_out_whose_chord_lost_every_result_is_gathered_by_its_last_element(
    t: TestEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Redis lost the chord's state: no element's result reaches the callback, which never
    # runs. Each element's result is recorded in the database, and the last one gathers.
    monkeypatch.setattr(t.dispatcher, "element_done", lambda node_exec_id, result: None)
    view = t.run(t.save_graph(fanned("multiply")), {"b": [3, 1, 2]})
    assert view.status is S.COMPLETED
    assert view.outputs == {"r": [[6, 2, 4]]}
    assert not [job for job in t.dispatcher.sent if job.kind == GATHER_FAN_OUT]


def test_an_element_delivered_again_returns_its_recorded_result_without_running(
    t: TestEngine,
) -> None:
    view = t.run(t.save_graph(fanned("multiply")), {"b": [5, 7]})
    calc = calc_node(view)
    again = fan_out.run_element(t.engine, calc.id, 1)
    assert again == {"index": 1, "outputs": [["result", 14]], "error": None}


def test_the_reconciler_gathers_a_fan_out_whose_elements_are_all_recorded(
    t: TestEngine,
) -> None:
    graph_exec_id = t.submit(t.save_graph(fanned("multiply")), {"b": [4, 5]})
    while not any(job.kind == FAN_OUT_ELEMENT for job in t.dispatcher.queued):
        assert t.step() is not None
    # Both elements ran and were recorded, but neither the last element nor the chord's
    # callback resumed the node (the worker was lost between the record and the resume).
    t.dispatcher.discard(lambda job: job.kind != FAN_OUT_ELEMENT)
    calc = calc_node(t.execution(graph_exec_id))
    with t.engine.db.session() as session:
        for index, b in enumerate([4, 5]):
            record_element(session, calc.id, ElementResult(index, [["result", 2 * b]], None))

    report = reconcile(t.engine, older_than_seconds=0)
    t.drain()

    assert report.repaired_nodes == 1
    view = t.execution(graph_exec_id)
    assert (view.status, view.outputs) == (S.COMPLETED, {"r": [[8, 10]]})
