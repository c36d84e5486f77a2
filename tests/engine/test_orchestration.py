"""Orchestration in-process: dataflow, streaming, conditions, errors, submission checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoexec import api
from autoexec.errors import InputValidationError, NotFoundError
from autoexec.statuses import ExecutionStatus
from autoexec.testing import Job, TestEngine
from tests.graphs import ADD_ONE, graph, node, user

S = ExecutionStatus
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def node_of(t: TestEngine, exec_id: str, node_id: str) -> api.NodeExecutionView:
    [found] = [n for n in t.execution(exec_id).node_executions if n.node_id == node_id]
    return found


def test_the_example_graph_completes_with_its_outputs(t: TestEngine) -> None:
    graph_id = t.save_graph(json.loads((EXAMPLES / "hello.json").read_text()))
    view = t.run(graph_id, {"x": 1})
    assert view.status is S.COMPLETED
    assert view.outputs == {"sum": [2], "message": ["Hello! 1 + 1 = 2"]}
    assert {n.status for n in view.node_executions} == {S.COMPLETED}
    assert view.stats["node_count"] == 5
    assert view.stats["node_error_count"] == 0


def test_a_raising_node_fails_the_graph_with_its_error(t: TestEngine) -> None:
    definition = graph(
        [node("x", "agent_input", name="x"), node("div", "calculator", operation="divide", b=0)],
        [("x", "result", "div", "a")],
    )
    view = t.run(t.save_graph(definition), {"x": 3})
    assert view.status is S.FAILED
    failed = [n for n in view.node_executions if n.node_id == "div"]
    assert [n.status for n in failed] == [S.FAILED]
    assert "zero" in failed[0].outputs["error"][0]
    assert view.error == failed[0].error
    assert view.stats["node_error_count"] == 1


def test_a_handled_error_completes_the_graph(t: TestEngine) -> None:
    definition = graph(
        [
            node("x", "agent_input", name="x"),
            node("crash", "test_crash"),
            node("out", "agent_output", name="caught"),
        ],
        [("x", "result", "crash", "value"), ("crash", "error", "out", "value")],
    )
    view = t.run(t.save_graph(definition), {"x": 3})
    assert view.status is S.COMPLETED
    assert view.outputs == {"caught": ["RuntimeError: boom"]}


def test_downstream_starts_while_upstream_still_streams(t: TestEngine) -> None:
    definition = graph(
        [
            node("stream", "test_slow_stream", count=3, delay=0.3),
            node("calc", "calculator", operation="multiply", b=10),
            node("out", "agent_output", name="tens"),
        ],
        [("stream", "item", "calc", "a"), ("calc", "result", "out", "value")],
    )
    exec_id = t.submit(t.save_graph(definition))
    stream_when_sent: list[S] = []

    def note_the_stream(job: Job) -> None:
        if job.node_id == "calc":
            stream_when_sent.append(node_of(t, exec_id, "stream").status)

    t.dispatcher.on_send = note_the_stream
    t.drain()
    view = t.execution(exec_id)
    assert view.status is S.COMPLETED
    assert sorted(view.outputs["tens"]) == [0, 10, 20]
    # Each item but the last was sent on while the stream was still running.
    assert stream_when_sent == [S.RUNNING, S.RUNNING, S.COMPLETED]


def test_a_condition_takes_one_branch_and_a_loop_ends_by_itself(t: TestEngine) -> None:
    definition = json.loads((EXAMPLES / "count_loop.json").read_text())
    view = t.run(t.save_graph(definition), {"start": 0, "limit": 3})
    assert view.status is S.COMPLETED
    assert view.outputs == {"steps": [0, 1, 2], "final": [3]}


def test_many_runs_complete_each_with_its_own_outputs(t: TestEngine) -> None:
    owner = user()
    graph_id = t.save_graph(ADD_ONE, owner)
    ids = [t.submit(graph_id, {"x": i}, owner) for i in range(30)]
    t.drain()
    views = [t.execution(i, owner) for i in ids]
    assert [v.status for v in views] == [S.COMPLETED] * 30
    assert [v.outputs["sum"] for v in views] == [[i + 1] for i in range(30)]


def test_submission_errors_name_the_problem_and_queue_nothing(t: TestEngine) -> None:
    graph_id = t.save_graph(ADD_ONE)
    with pytest.raises(InputValidationError, match="missing required graph input 'x'"):
        t.submit(graph_id, {})
    with pytest.raises(InputValidationError, match="unknown graph input 'y'"):
        t.submit(graph_id, {"x": 1, "y": 2})
    with pytest.raises(InputValidationError, match="unknown node 'nope'"):
        t.submit(graph_id, {"x": 1}, nodes_input_masks={"nope": {}})
    assert t.dispatcher.sent == []
    assert api.list_executions("test-user", engine=t.engine) == []


def test_another_users_execution_is_not_found(t: TestEngine) -> None:
    owner = user()
    graph_id = t.save_graph(ADD_ONE, owner)
    exec_id = t.submit(graph_id, {"x": 1}, owner)
    with pytest.raises(NotFoundError):
        t.execution(exec_id, "someone-else")
    with pytest.raises(NotFoundError):
        t.submit(graph_id, {"x": 1}, "someone-else")
    t.drain()
    assert t.execution(exec_id, owner).status is S.COMPLETED
