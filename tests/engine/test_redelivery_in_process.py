"""Re-delivered and retried tasks without amplification (issue 23, finding 1): a node task that
comes again re-sends only the successors it queued itself, and wake-ups while the database is
down coalesce into the step that is retrying. Each test takes the steps itself, through the
in-memory dispatcher, and counts what was sent."""

from __future__ import annotations

from typing import Any

import pytest

from autoexec.engine import orchestrator
from autoexec.engine.node_execution import execute_node
from autoexec.statuses import ExecutionStatus
from autoexec.store.transaction import DatabaseOperationalError
from autoexec.testing import ADVANCE_GRAPH, EXECUTE_NODE, Job, TestEngine
from tests.graphs import graph, node

S = ExecutionStatus
ITEMS = 12

STREAM_TIMES_TEN = graph(
    [
        node("stream", "test_slow_stream", count=ITEMS, delay=0.0),
        node("calc", "calculator", operation="multiply", b=10),
        node("out", "agent_output", name="tens"),
    ],
    [("stream", "item", "calc", "a"), ("calc", "result", "out", "value")],
)


def start(t: TestEngine, definition: dict[str, Any], inputs: dict[str, Any]) -> str:
    """Submit a run and admit it: its first nodes are queued, not run."""
    exec_id = t.submit(t.save_graph(definition), inputs)
    t.step()  # run_graph
    return exec_id


def sent_since(t: TestEngine, mark: int, kind: str) -> list[Job]:
    return [job for job in t.dispatcher.sent[mark:] if job.kind == kind]


def stream_with_calcs_queued(t: TestEngine) -> tuple[str, list[int]]:
    """A run whose stream has ended, with the calc executions it queued taken off the queue
    (their messages are with the test)."""
    exec_id = start(t, STREAM_TIMES_TEN, {})
    assert execute_node(t.engine, t.dispatcher.take_node()) is S.COMPLETED
    calcs = t.dispatcher.take_nodes()
    assert len(calcs) == ITEMS
    return exec_id, calcs


def assert_completed_exactly(t: TestEngine, exec_id: str) -> None:
    t.drain()
    view = t.execution(exec_id)
    assert view.status is S.COMPLETED
    assert sorted(view.outputs["tens"]) == [10 * i for i in range(ITEMS)]
    ran = [n for n in view.node_executions if n.node_id != "stream"]
    assert all(n.status is S.COMPLETED and n.attempt == 1 for n in ran)


def test_tasks_retried_after_a_database_outage_send_each_successor_once(t: TestEngine) -> None:
    # Each calc message failed at its claim while the database was down and comes back as a
    # retry: it runs the node for the first time, so it has nothing of its own to send again.
    exec_id, calcs = stream_with_calcs_queued(t)
    mark = len(t.dispatcher.sent)
    for calc in calcs:
        assert execute_node(t.engine, calc, rerun=True, graph_exec_id=exec_id) is S.COMPLETED

    sent = sent_since(t, mark, EXECUTE_NODE)
    # Each calc sent its own out once: before, each retry also sent every QUEUED out again
    # (ITEMS * (ITEMS + 1) / 2 messages) and woke a step of its own.
    assert sorted(job.node_id or "" for job in sent) == ["out"] * ITEMS
    assert len({job.task_id for job in sent}) == ITEMS
    assert sent_since(t, mark, ADVANCE_GRAPH) == []
    assert_completed_exactly(t, exec_id)


def test_a_late_copy_of_an_ended_task_sends_again_only_what_that_node_queued(
    t: TestEngine,
) -> None:
    exec_id, calcs = stream_with_calcs_queued(t)
    for calc in calcs:
        assert execute_node(t.engine, calc, graph_exec_id=exec_id) is S.COMPLETED
    outs = t.dispatcher.nodes()  # every out QUEUED, its message sent once
    assert len(outs) == ITEMS

    # The first calc's message comes again (its worker died after the end's commit).
    mark = len(t.dispatcher.sent)
    assert execute_node(t.engine, calcs[0], rerun=True, graph_exec_id=exec_id) is None

    [again] = sent_since(t, mark, EXECUTE_NODE)
    [own] = [task for task in outs if task.task_id == again.task_id]
    assert again.node == own  # that calc's out, with its task id: a copy the claim refuses
    assert_completed_exactly(t, exec_id)


def failing_step(*_args: Any) -> Any:
    raise DatabaseOperationalError("SELECT ...", {}, ConnectionRefusedError("refused"))


def test_wake_ups_while_the_database_is_down_coalesce_into_the_retrying_step(
    t: TestEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    exec_id = start(t, STREAM_TIMES_TEN, {})
    t.dispatcher.take_nodes()
    mark = len(t.dispatcher.sent)
    t.engine.wake(exec_id)
    [step] = sent_since(t, mark, ADVANCE_GRAPH)
    assert t.dispatcher.take() == step

    monkeypatch.setattr(orchestrator, "_deliver_batch", failing_step)
    with pytest.raises(DatabaseOperationalError):  # its task retries it later
        t.perform(step)
    mark = len(t.dispatcher.sent)
    for _ in range(5):  # node tasks ending meanwhile, each waking the run
        t.engine.wake(exec_id)
    assert sent_since(t, mark, ADVANCE_GRAPH) == []

    monkeypatch.undo()
    t.perform(step)  # the retry: the wake-ups it stood for are done
    mark = len(t.dispatcher.sent)
    t.engine.wake(exec_id)
    assert len(sent_since(t, mark, ADVANCE_GRAPH)) == 1
