"""A node task delivers its own outputs and sends its successors (no orchestrator step on the
way); what a crash leaves half done is finished by ``advance_graph``, once. Each test takes
the steps itself, through the in-memory dispatcher."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update

from autoexec.block_run import watch
from autoexec.engine import output_buffer
from autoexec.engine.node_execution import execute_node
from autoexec.statuses import ExecutionStatus
from autoexec.store import executions as repo
from autoexec.store import graphs as graph_store
from autoexec.store.tables import NodeExecution, NodeExecutionOutput
from autoexec.testing import EXECUTE_NODE, Job, TestEngine
from tests.engine.conftest import MakeEngine
from tests.graphs import ADD_ONE, graph, node

S = ExecutionStatus


class KilledHere(Exception):
    """Where the test kills the worker."""


def killed_here(job: Job) -> None:
    raise KilledHere()


def start(t: TestEngine, definition: dict[str, Any], inputs: dict[str, Any]) -> str:
    """Submit a run and admit it: its first nodes are queued, not run."""
    exec_id = t.submit(t.save_graph(definition), inputs)
    t.step()  # run_graph
    return exec_id


def node_exec_id(t: TestEngine, exec_id: str, node_id: str) -> int:
    [found] = [n.id for n in t.execution(exec_id).node_executions if n.node_id == node_id]
    return found


def test_a_node_killed_after_its_commit_before_sending_its_successor(
    t: TestEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # x's output waits for x's end, so that one transaction records both and queues calc.
    monkeypatch.setattr(output_buffer, "WINDOW_SECONDS", 60.0)
    exec_id = start(t, ADD_ONE, {"x": 5})
    x = t.dispatcher.take_node()

    t.dispatcher.on_send = killed_here
    with pytest.raises(KilledHere):
        execute_node(t.engine, x)
    t.dispatcher.on_send = None
    calc = node_exec_id(t, exec_id, "calc")
    with t.engine.db.session() as session:
        queued = repo.get_node_execution(session, calc)
        # Noted as sent in the commit that queued it: x's re-delivered task sends it again.
        assert (queued.status, queued.dispatched) == (S.QUEUED, True)

    assert execute_node(t.engine, x, rerun=True) is None  # re-delivered: x already ended
    assert [n.node_exec_id for n in t.dispatcher.nodes()] == [calc]
    t.drain()  # with the step the re-delivered task woke

    view = t.execution(exec_id)
    assert view.status is S.COMPLETED
    assert view.outputs == {"sum": [6]}
    ran = sorted((n.node_id, n.status, n.attempt) for n in view.node_executions)
    assert ran == [("calc", S.COMPLETED, 1), ("out", S.COMPLETED, 1), ("x", S.COMPLETED, 1)]


def test_a_node_whose_graph_cannot_be_read_stays_queued_for_its_retry(
    t: TestEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The claim commits at once: the run's graph is read before it, so a failed read leaves
    # the node QUEUED (its message is retried), not RUNNING with no task to run it.
    exec_id = start(t, ADD_ONE, {"x": 5})
    x = t.dispatcher.take_node()
    graph_store._run_graphs.pop(exec_id, None)  # a worker process new to this run

    def unreadable(*_args: Any) -> Any:
        raise KilledHere()

    monkeypatch.setattr(graph_store, "load_graph", unreadable)
    with pytest.raises(KilledHere):
        execute_node(t.engine, x, graph_exec_id=exec_id)
    with t.engine.db.session() as session:
        waiting = repo.get_node_execution(session, x)
        assert (waiting.status, waiting.attempt) == (S.QUEUED, 0)

    monkeypatch.undo()
    assert execute_node(t.engine, x, rerun=True, graph_exec_id=exec_id) is S.COMPLETED
    t.drain()
    view = t.execution(exec_id)
    assert (view.status, view.outputs) == (S.COMPLETED, {"sum": [6]})
    ran = sorted((n.node_id, n.status, n.attempt) for n in view.node_executions)
    assert ran == [("calc", S.COMPLETED, 1), ("out", S.COMPLETED, 1), ("x", S.COMPLETED, 1)]


SLOW_PAIR = graph(
    [
        node("stream", "test_slow_stream", count=2, delay=1.0),
        node("calc", "calculator", operation="multiply", b=10),
        node("out", "agent_output", name="tens"),
    ],
    [("stream", "item", "calc", "a"), ("calc", "result", "out", "value")],
)


def test_a_slow_stream_is_not_held_back_by_batching(t: TestEngine) -> None:
    """The stream yields one item, then blocks before the next: the item's successor is sent
    while the stream still runs."""
    exec_id = start(t, SLOW_PAIR, {})
    stream = t.dispatcher.take_node()
    stream_when_sent: list[S] = []

    def note_the_stream(job: Job) -> None:
        if job.node_id == "calc":
            with t.engine.db.session() as session:
                stream_when_sent.append(repo.get_node_execution(session, stream).status)

    t.dispatcher.on_send = note_the_stream
    assert execute_node(t.engine, stream) is S.COMPLETED
    t.dispatcher.on_send = None
    assert stream_when_sent[0] is S.RUNNING
    t.drain()
    assert sorted(t.execution(exec_id).outputs["tens"]) == [0, 10]


def test_a_timer_flush_that_could_not_send_its_successor_leaves_it_to_a_step(
    t: TestEngine,
) -> None:
    """The timer records the first item and queues its calc, then sending calc fails (a broker
    blip): the stream's end must leave an orchestrator step to send it."""
    exec_id = start(t, SLOW_PAIR, {})
    stream = t.dispatcher.take_node()
    t.dispatcher.queued.clear()
    failed: list[Job] = []

    def fails_once(job: Job) -> None:
        if job.kind == EXECUTE_NODE and not failed:
            failed.append(job)
            raise KilledHere()

    t.dispatcher.on_send = fails_once
    assert execute_node(t.engine, stream) is S.COMPLETED
    assert len(failed) == 1  # the timer's send failed
    t.drain()

    view = t.execution(exec_id)
    assert view.status is S.COMPLETED
    assert sorted(view.outputs["tens"]) == [0, 10]


LIMIT_ERROR = "stopped after 1 node executions: the limit is AUTOEXEC_MAX_NODE_EXECUTIONS_PER_RUN=1"


def yield_then_wait(fail: bool) -> dict[str, Any]:
    return graph(
        [
            node("wait", "test_yield_then_wait", seconds=30.0, fail=fail),
            node("calc", "calculator", operation="multiply", b=10),
            node("out", "agent_output", name="tens"),
        ],
        [("wait", "item", "calc", "a"), ("calc", "result", "out", "value")],
    )


def test_a_limit_the_timer_finds_stops_a_blocked_node_and_the_run(
    make_engine: MakeEngine,
) -> None:
    """The timer's flush of the first item queues calc, one node execution too many; the
    block, waiting for ``is_cancelled``, is told to stop at once and its end ends the run."""
    t = make_engine(max_node_executions_per_run=1)
    exec_id = start(t, yield_then_wait(fail=False), {})

    assert execute_node(t.engine, t.dispatcher.take_node()) is S.TERMINATED

    view = t.execution(exec_id)
    assert (view.status, view.error) == (S.FAILED, LIMIT_ERROR)
    ran = sorted((n.node_id, n.status) for n in view.node_executions)
    assert ran == [("calc", S.TERMINATED), ("wait", S.TERMINATED)]
    assert t.engine.coordinator.stop_requested(exec_id)


def test_a_block_failing_after_the_timer_found_a_limit_ends_the_run(
    make_engine: MakeEngine,
) -> None:
    """The block raises once told to stop: its node ends FAILED with its error recorded, and
    its end ends the run at the limit (the stop is not lost in the error handling)."""
    t = make_engine(max_node_executions_per_run=1)
    exec_id = start(t, yield_then_wait(fail=True), {})

    assert execute_node(t.engine, t.dispatcher.take_node()) is S.FAILED

    view = t.execution(exec_id)
    assert (view.status, view.error) == (S.FAILED, LIMIT_ERROR)
    wait = next(n for n in view.node_executions if n.node_id == "wait")
    assert (wait.status, wait.error) == (S.FAILED, "gave up waiting")
    assert wait.outputs == {"item": [0], "error": ["gave up waiting"]}


def test_a_superseded_attempt_records_and_delivers_nothing_more(
    t: TestEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another attempt takes the stream over after its second item was sent on: the old
    attempt records no further item and sends no further calc; the new one finishes, once."""
    monkeypatch.setattr(output_buffer, "MAX_BATCH", 1)  # every yield is its own flush
    monkeypatch.setattr(watch, "WATCH_INTERVAL_SECONDS", 60.0)  # only fencing stops it
    definition = graph(
        [
            node("stream", "test_slow_stream", count=4, delay=0.0),
            node("calc", "calculator", operation="multiply", b=10),
            node("out", "agent_output", name="tens"),
        ],
        [("stream", "item", "calc", "a"), ("calc", "result", "out", "value")],
    )
    exec_id = start(t, definition, {})
    stream = t.dispatcher.take_node()
    calcs_sent: list[Job] = []

    def take_over_at_the_second_send(job: Job) -> None:
        if job.node_id != "calc":
            return
        calcs_sent.append(job)
        if len(calcs_sent) == 2:
            with t.engine.db.session() as session:
                session.execute(
                    update(NodeExecution)
                    .where(NodeExecution.id == stream)
                    .values(attempt=NodeExecution.attempt + 1)
                )

    t.dispatcher.on_send = take_over_at_the_second_send
    assert execute_node(t.engine, stream) is None
    t.dispatcher.on_send = None
    with t.engine.db.session() as session:
        recorded = session.scalars(
            select(NodeExecutionOutput.value)
            .where(NodeExecutionOutput.node_exec_id == stream)
            .order_by(NodeExecutionOutput.seq)
        ).all()
    assert (recorded, len(calcs_sent)) == ([0, 1], 2)

    assert execute_node(t.engine, stream, rerun=True) is S.COMPLETED  # the new attempt
    t.drain()
    view = t.execution(exec_id)
    assert view.status is S.COMPLETED
    assert sorted(view.outputs["tens"]) == [0, 10, 20, 30]
    calcs = [n for n in view.node_executions if n.node_id == "calc"]
    assert len(calcs) == 4


def test_the_output_timer_survives_an_error_escaping_a_flush(
    t: TestEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error escapes the timer's first flush; the timer still flushes the next stream's
    first item while that stream is running."""
    flush_due = output_buffer.OutputBuffer.flush_due
    failures = [RuntimeError("escaped")]

    def fails_once(buffer: output_buffer.OutputBuffer) -> None:
        if failures:
            raise failures.pop()
        flush_due(buffer)

    monkeypatch.setattr(output_buffer.OutputBuffer, "flush_due", fails_once)
    start(t, SLOW_PAIR, {})
    assert execute_node(t.engine, t.dispatcher.take_node()) is S.COMPLETED
    assert failures == []
    t.dispatcher.queued.clear()

    exec_id = start(t, SLOW_PAIR, {})
    stream = t.dispatcher.take_node()
    stream_when_sent: list[S] = []

    def note_the_stream(job: Job) -> None:
        with t.engine.db.session() as session:
            stream_when_sent.append(repo.get_node_execution(session, stream).status)

    t.dispatcher.on_send = note_the_stream
    assert execute_node(t.engine, stream) is S.COMPLETED
    assert stream_when_sent[0] is S.RUNNING
    t.dispatcher.on_send = None
    t.drain()
    assert t.execution(exec_id).outputs == {"tens": [0, 10]}
