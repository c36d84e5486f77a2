"""Runs that could never end on their own: a block this process lacks, a loop with no end,
a node blocking past the run's deadline; and refused run options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoexec import testing
from autoexec.errors import InputValidationError
from autoexec.statuses import ExecutionStatus
from autoexec.testing import TestEngine
from tests.engine.conftest import MakeEngine
from tests.graphs import graph, node, user
from tests.integration import blocks_for_tests

S = ExecutionStatus
NOT_ENDED = {S.QUEUED, S.RUNNING, S.INCOMPLETE}
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def missing_block_message(node_id: str) -> str:
    return f"block 'test_shout' of node {node_id!r} is not registered on worker "


HOW_TO_REGISTER = (
    ": list its module in AUTOEXEC_BLOCK_MODULES or install its package "
    "(entry point group autoexec.blocks) on every worker"
)


def run_without_test_blocks(
    database: Path, definition: dict[str, object], inputs: dict[str, object]
) -> testing.api.ExecutionView:
    """Submit from an engine with the test blocks; run on one without them (a worker that
    lacks the block)."""
    with testing.engine(blocks=[blocks_for_tests], database=database) as submitter:
        exec_id = submitter.submit(submitter.save_graph(definition), inputs)
        sent = list(submitter.dispatcher.queued)
    with testing.engine(database=database) as worker:
        for job in sent:
            worker.dispatcher.put(job)
        worker.drain()
        return worker.execution(exec_id)


def test_a_start_node_whose_block_is_missing_fails_the_run(database: Path) -> None:
    definition = graph(
        [node("loud", "test_shout", text="hi"), node("out", "agent_output", name="said")],
        [("loud", "result", "out", "value")],
    )
    view = run_without_test_blocks(database, definition, {})
    assert view.status is S.FAILED
    assert view.error is not None
    assert view.error.startswith(missing_block_message("loud"))
    assert view.error.endswith(HOW_TO_REGISTER)
    loud = [n for n in view.node_executions if n.node_id == "loud"]
    assert [(n.status, n.error) for n in loud] == [(S.FAILED, view.error)]
    assert not NOT_ENDED & {n.status for n in view.node_executions}


def test_a_downstream_block_that_is_missing_fails_the_run(database: Path) -> None:
    definition = graph(
        [node("x", "agent_input", name="x"), node("loud", "test_shout")],
        [("x", "result", "loud", "text")],
    )
    view = run_without_test_blocks(database, definition, {"x": "a"})
    assert view.status is S.FAILED
    assert view.error is not None
    assert view.error.startswith(missing_block_message("loud"))
    assert view.error.endswith(HOW_TO_REGISTER)
    assert {n.node_id: n.status for n in view.node_executions} == {"x": S.COMPLETED}


LIMIT_ERROR = (
    "stopped after 20 node executions: the limit is AUTOEXEC_MAX_NODE_EXECUTIONS_PER_RUN=20"
)


def test_a_loop_stops_at_the_node_execution_limit(make_engine: MakeEngine) -> None:
    t = make_engine(max_node_executions_per_run=20)
    definition = json.loads((EXAMPLES / "count_loop.json").read_text())
    view = t.run(t.save_graph(definition), {"limit": 1_000_000})
    assert view.status is S.FAILED
    assert view.error == LIMIT_ERROR
    statuses = [n.status for n in view.node_executions]
    assert not NOT_ENDED & set(statuses)
    assert statuses.count(S.COMPLETED) <= 20
    assert S.TERMINATED in statuses  # the 21st was stopped before it ran


def test_a_loop_of_failing_ready_checks_stops_at_the_node_execution_limit(
    make_engine: MakeEngine,
) -> None:
    """No node ever runs here: each execution fails its ready check and its error loops back
    into the same pin. Those executions count towards the limit too."""
    t = make_engine(max_node_executions_per_run=20)
    definition = graph(
        [
            node("text", "store_value", input="abc"),
            node("calc", "calculator", operation="add", b=1),
        ],
        [("text", "output", "calc", "a"), ("calc", "error", "calc", "a")],
    )
    view = t.run(t.save_graph(definition))
    assert view.status is S.FAILED
    assert view.error == LIMIT_ERROR
    assert not NOT_ENDED & {n.status for n in view.node_executions}
    assert sum(n.status is S.FAILED for n in view.node_executions) >= 20


def test_a_node_blocking_past_the_deadline_is_stopped(t: TestEngine) -> None:
    definition = graph([node("nap", "wait", seconds=3600, data="late")], [])
    view = t.run(t.save_graph(definition), max_run_seconds=1)
    assert view.status is S.FAILED
    assert view.error == "stopped: ran longer than max_run_seconds=1"
    assert [(n.node_id, n.status) for n in view.node_executions] == [("nap", S.TERMINATED)]
    assert view.outputs == {}


def test_a_run_stopped_at_its_deadline_hands_its_slot_on(make_engine: MakeEngine) -> None:
    t = make_engine(max_concurrent_runs_per_user=1)
    napping = graph([node("nap", "wait", seconds=3600)], [])
    echo = graph(
        [node("x", "agent_input", name="x"), node("out", "agent_output", name="x")],
        [("x", "result", "out", "value")],
    )
    first = t.submit(t.save_graph(napping), max_run_seconds=1)
    second = t.submit(t.save_graph(echo), {"x": 7})
    t.drain()
    ended = [t.execution(e) for e in (first, second)]
    assert [v.status for v in ended] == [S.FAILED, S.COMPLETED]
    assert ended[1].outputs == {"x": [7]}


@pytest.mark.parametrize("seconds", [0, -1, float("inf"), "5"])
def test_a_bad_run_deadline_is_refused_and_queues_nothing(t: TestEngine, seconds: object) -> None:
    owner = user()
    graph_id = t.save_graph(graph([node("nap", "wait", seconds=0)], []), owner)
    with pytest.raises(InputValidationError, match="max_run_seconds must be"):
        t.submit(graph_id, {}, owner, max_run_seconds=seconds)
    assert t.dispatcher.sent == []
