"""A node task delivers its own outputs and sends its successors (no orchestrator step on the
way); what a crash leaves half done is finished by ``advance_graph``, once."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from autoexec import api
from autoexec.block_run import watch
from autoexec.engine import output_buffer
from autoexec.engine.admission import admit
from autoexec.engine.node_execution import execute_node
from autoexec.engine.orchestrator import advance
from autoexec.statuses import ExecutionStatus
from autoexec.store import executions as repo
from autoexec.store import graphs as graph_store
from autoexec.store.executions import NodeTask
from autoexec.store.tables import NodeExecution, NodeExecutionInput, NodeExecutionOutput
from tests.integration.conftest import Cluster, kill_worker, private_queues, worker_process
from tests.integration.test_engine import ADD_ONE, graph, node, run, user
from tests.integration.test_worker_killed import wait_for_outputs

S = ExecutionStatus


class KilledHere(Exception):
    """Where the test kills the worker."""


@dataclass
class StepByStep:
    """A dispatcher that sends nothing (the test runs each step itself), and can die while
    sending a node."""

    nodes: list[int] = field(default_factory=list)
    woken: list[str] = field(default_factory=list)
    crash_on_send: bool = False
    sends_to_fail: int = 0
    on_send: Callable[[NodeTask], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run_graph(self, graph_exec_id: str) -> None:
        pass

    def advance_graph(self, graph_exec_id: str, countdown: float | None = None) -> None:
        with self.lock:
            self.woken.append(graph_exec_id)

    def execute_node(self, task: NodeTask) -> None:
        with self.lock:
            if self.crash_on_send:
                raise KilledHere()
            if self.sends_to_fail > 0:
                self.sends_to_fail -= 1
                raise KilledHere()
            self.nodes.append(task.node_exec_id)
        if self.on_send is not None:
            self.on_send(task)

    def revoke(self, task_ids: list[str]) -> None:
        pass


def run_sent(steps: StepByStep, engine: Any) -> None:
    """Run every node sent, and the ones they send, until none is left."""
    while steps.nodes:
        execute_node(engine, steps.nodes.pop(0))


def run_all(steps: StepByStep, engine: Any) -> None:
    """Run every orchestrator step woken and every node sent, until none is left."""
    while steps.nodes or steps.woken:
        run_sent(steps, engine)
        while steps.woken:
            advance(engine, steps.woken.pop(0))


def start(engine: Any, definition: dict[str, Any], inputs: dict[str, Any]) -> tuple[str, str]:
    owner = user()
    graph_id, _ = api.save_graph(definition, owner, engine=engine)
    exec_id = api.execute_graph(graph_id, owner, inputs, engine=engine)
    assert admit(engine, exec_id)
    advance(engine, exec_id)
    return exec_id, owner


def node_exec_id(engine: Any, exec_id: str, owner: str, node_id: str) -> int:
    view = api.get_execution(exec_id, owner, engine=engine)
    (found,) = [n.id for n in view.node_executions if n.node_id == node_id]
    return found


def test_a_node_killed_after_its_commit_before_sending_its_successor(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # x's output waits for x's end, so that one transaction records both and queues calc.
    monkeypatch.setattr(output_buffer, "WINDOW_SECONDS", 60.0)
    steps = StepByStep()
    engine = replace(cluster.engine, dispatcher=steps)
    exec_id, owner = start(engine, ADD_ONE, {"x": 5})
    x = steps.nodes.pop()

    steps.crash_on_send = True
    with pytest.raises(KilledHere):
        execute_node(engine, x)
    steps.crash_on_send = False
    calc = node_exec_id(engine, exec_id, owner, "calc")
    with engine.db.session() as session:
        queued = repo.get_node_execution(session, calc)
        # Noted as sent in the commit that queued it: x's re-delivered task sends it again.
        assert (queued.status, queued.dispatched) == (S.QUEUED, True)

    assert execute_node(engine, x, rerun=True) is None  # re-delivered: x already ended
    assert steps.nodes == [calc]
    run_all(steps, engine)  # with the step the re-delivered task woke

    view = api.get_execution(exec_id, owner, engine=engine)
    assert view.status is S.COMPLETED
    assert view.outputs == {"sum": [6]}
    ran = sorted((n.node_id, n.status, n.attempt) for n in view.node_executions)
    assert ran == [("calc", S.COMPLETED, 1), ("out", S.COMPLETED, 1), ("x", S.COMPLETED, 1)]


def test_a_node_whose_graph_cannot_be_read_stays_queued_for_its_retry(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The claim commits at once: the run's graph is read before it, so a failed read leaves
    # the node QUEUED (its message is retried), not RUNNING with no task to run it.
    steps = StepByStep()
    engine = replace(cluster.engine, dispatcher=steps)
    exec_id, owner = start(engine, ADD_ONE, {"x": 5})
    x = steps.nodes.pop()
    graph_store._run_graphs.pop(exec_id, None)  # a worker process new to this run

    def unreadable(*_args: Any) -> Any:
        raise KilledHere()

    monkeypatch.setattr(graph_store, "load_graph", unreadable)
    with pytest.raises(KilledHere):
        execute_node(engine, x, graph_exec_id=exec_id)
    with engine.db.session() as session:
        waiting = repo.get_node_execution(session, x)
        assert (waiting.status, waiting.attempt) == (S.QUEUED, 0)

    monkeypatch.undo()
    assert execute_node(engine, x, rerun=True, graph_exec_id=exec_id) is S.COMPLETED
    run_all(steps, engine)
    view = api.get_execution(exec_id, owner, engine=engine)
    assert (view.status, view.outputs) == (S.COMPLETED, {"sum": [6]})
    ran = sorted((n.node_id, n.status, n.attempt) for n in view.node_executions)
    assert ran == [("calc", S.COMPLETED, 1), ("out", S.COMPLETED, 1), ("x", S.COMPLETED, 1)]


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
    steps = StepByStep()
    engine = replace(cluster.engine, dispatcher=steps)
    exec_id, owner = start(engine, TWO_INTO_ONE, {"a": 2, "b": 3})
    first, second = steps.nodes
    steps.nodes.clear()
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


def test_a_slow_stream_is_not_held_back_by_batching(cluster: Cluster) -> None:
    """The stream yields one item, then blocks before the next: the item must not wait."""
    definition = graph(
        [
            node("stream", "test_slow_stream", count=2, delay=2.0),
            node("calc", "calculator", operation="multiply", b=10),
            node("out", "agent_output", name="tens"),
        ],
        [("stream", "item", "calc", "a"), ("calc", "result", "out", "value")],
    )
    view = run(cluster, definition, {})
    assert view.status is S.COMPLETED
    assert sorted(view.outputs["tens"]) == [0, 10]
    stream = next(n for n in view.node_executions if n.node_id == "stream")
    first_calc_end = min(n.ended_at for n in view.node_executions if n.node_id == "calc")
    assert stream.ended_at is not None and first_calc_end < stream.ended_at


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


SLOW_PAIR = graph(
    [
        node("stream", "test_slow_stream", count=2, delay=1.0),
        node("calc", "calculator", operation="multiply", b=10),
        node("out", "agent_output", name="tens"),
    ],
    [("stream", "item", "calc", "a"), ("calc", "result", "out", "value")],
)


def test_a_timer_flush_that_could_not_send_its_successor_leaves_it_to_a_step(
    cluster: Cluster,
) -> None:
    """The timer records the first item and queues its calc, then sending calc fails (a broker
    blip): the stream's end must leave an orchestrator step to send it."""
    steps = StepByStep()
    engine = replace(cluster.engine, dispatcher=steps)
    exec_id, owner = start(engine, SLOW_PAIR, {})
    stream = steps.nodes.pop()
    steps.woken.clear()
    steps.sends_to_fail = 1

    assert execute_node(engine, stream) is S.COMPLETED
    assert steps.sends_to_fail == 0  # the timer's send failed
    run_all(steps, engine)

    view = api.get_execution(exec_id, owner, engine=engine)
    assert view.status is S.COMPLETED
    assert sorted(view.outputs["tens"]) == [0, 10]


def limited(cluster: Cluster, steps: StepByStep) -> Any:
    """The cluster's engine sending through ``steps``; a run may create one node execution."""
    settings = cluster.engine.settings.model_copy(update={"max_node_executions_per_run": 1})
    return replace(cluster.engine, dispatcher=steps, settings=settings)


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


def test_a_limit_the_timer_finds_stops_a_blocked_node_and_the_run(cluster: Cluster) -> None:
    """The timer's flush of the first item queues calc, one node execution too many; the
    block, waiting for ``is_cancelled``, is told to stop at once and its end ends the run."""
    steps = StepByStep()
    engine = limited(cluster, steps)
    exec_id, owner = start(engine, yield_then_wait(fail=False), {})

    assert execute_node(engine, steps.nodes.pop()) is S.TERMINATED

    view = api.get_execution(exec_id, owner, engine=engine)
    assert (view.status, view.error) == (S.FAILED, LIMIT_ERROR)
    ran = sorted((n.node_id, n.status) for n in view.node_executions)
    assert ran == [("calc", S.TERMINATED), ("wait", S.TERMINATED)]
    assert cluster.engine.coordinator.stop_requested(exec_id)


def test_a_block_failing_after_the_timer_found_a_limit_ends_the_run(cluster: Cluster) -> None:
    """The block raises once told to stop: its node ends FAILED with its error recorded, and
    its end ends the run at the limit (the stop is not lost in the error handling)."""
    steps = StepByStep()
    engine = limited(cluster, steps)
    exec_id, owner = start(engine, yield_then_wait(fail=True), {})

    assert execute_node(engine, steps.nodes.pop()) is S.FAILED

    view = api.get_execution(exec_id, owner, engine=engine)
    assert (view.status, view.error) == (S.FAILED, LIMIT_ERROR)
    wait = next(n for n in view.node_executions if n.node_id == "wait")
    assert (wait.status, wait.error) == (S.FAILED, "gave up waiting")
    assert wait.outputs == {"item": [0], "error": ["gave up waiting"]}


def test_a_superseded_attempt_records_and_delivers_nothing_more(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
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
    steps = StepByStep()
    engine = replace(cluster.engine, dispatcher=steps)
    exec_id, owner = start(engine, definition, {})
    stream = steps.nodes.pop()

    def take_over_at_the_second_send(task: NodeTask) -> None:
        if len(steps.nodes) == 2:
            with engine.db.session() as session:
                session.execute(
                    update(NodeExecution)
                    .where(NodeExecution.id == stream)
                    .values(attempt=NodeExecution.attempt + 1)
                )

    steps.on_send = take_over_at_the_second_send
    assert execute_node(engine, stream) is None
    steps.on_send = None
    with engine.db.session() as session:
        recorded = session.scalars(
            select(NodeExecutionOutput.value)
            .where(NodeExecutionOutput.node_exec_id == stream)
            .order_by(NodeExecutionOutput.seq)
        ).all()
    assert (recorded, len(steps.nodes)) == ([0, 1], 2)

    assert execute_node(engine, stream, rerun=True) is S.COMPLETED  # the new attempt
    run_all(steps, engine)
    view = api.get_execution(exec_id, owner, engine=engine)
    assert view.status is S.COMPLETED
    assert sorted(view.outputs["tens"]) == [0, 10, 20, 30]
    calcs = [n for n in view.node_executions if n.node_id == "calc"]
    assert len(calcs) == 4


def test_the_output_timer_survives_an_error_escaping_a_flush(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
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
    steps = StepByStep()
    engine = replace(cluster.engine, dispatcher=steps)
    start(engine, SLOW_PAIR, {})
    assert execute_node(engine, steps.nodes.pop()) is S.COMPLETED
    assert failures == []
    steps.nodes.clear()

    exec_id, owner = start(engine, SLOW_PAIR, {})
    stream = steps.nodes.pop()
    stream_when_sent: list[S] = []

    def note_the_stream(task: NodeTask) -> None:
        with engine.db.session() as session:
            stream_when_sent.append(repo.get_node_execution(session, stream).status)

    steps.on_send = note_the_stream
    assert execute_node(engine, stream) is S.COMPLETED
    assert stream_when_sent[0] is S.RUNNING
    steps.on_send = None
    run_all(steps, engine)
    assert api.get_execution(exec_id, owner, engine=engine).outputs == {"tens": [0, 10]}
