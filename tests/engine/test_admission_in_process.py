"""Admission (SPEC §5): at most AUTOEXEC_MAX_CONCURRENT_RUNS_PER_USER runs RUNNING; the rest
wait QUEUED and start oldest first as slots free up."""

from __future__ import annotations

import pytest
from kombu.exceptions import OperationalError as BrokerError

from autoexec import api
from autoexec.engine.admission import start_run
from autoexec.engine.node_execution import execute_node
from autoexec.engine.orchestrator import advance
from autoexec.engine.submission import RunRequest, create_execution
from autoexec.statuses import ExecutionStatus
from autoexec.store import executions as repo
from autoexec.testing import RUN_GRAPH, Job, TestEngine
from tests.engine.conftest import MakeEngine
from tests.graphs import ADD_ONE, graph, node, user

S = ExecutionStatus

ONE_NODE = graph([node("sum", "calculator", operation="add", a=1, b=1)], [])


def statuses(t: TestEngine, ids: list[str]) -> list[ExecutionStatus]:
    with t.engine.db.session() as session:
        return [repo.status_of(session, i) for i in ids]


def test_runs_beyond_the_user_limit_wait_and_start_oldest_first(make_engine: MakeEngine) -> None:
    t = make_engine(max_concurrent_runs_per_user=2)
    owner, other = user(), user()
    graph_id = t.save_graph(ADD_ONE, owner)
    ids = [t.submit(graph_id, {"x": i}, owner) for i in range(5)]
    other_id = t.submit(t.save_graph(ADD_ONE, other), {"x": 99}, other)
    seen: list[list[ExecutionStatus]] = []
    while t.step():
        seen.append(statuses(t, ids))
    assert all(row.count(S.RUNNING) <= 2 for row in seen)
    assert [statuses(t, ids)] == [[S.COMPLETED] * 5]
    views = [t.execution(i, owner) for i in ids]
    assert [v.outputs["sum"] for v in views] == [[i + 1] for i in range(5)]
    started = sorted(range(5), key=lambda i: (views[i].started_at, i))
    assert started == list(range(5))  # oldest first
    # Another user's run is not held back by this user's backlog.
    other_view = t.execution(other_id, other)
    assert other_view.status is S.COMPLETED
    assert other_view.started_at is not None and views[-1].started_at is not None
    assert other_view.started_at < views[-1].started_at


def test_a_backlog_is_admitted_with_at_most_two_run_messages_per_run(
    make_engine: MakeEngine,
) -> None:
    """A run waiting for a slot is not sent a message each time a slot frees or another run
    arrives: its own submission is one message; the slot handed to it is one."""
    backlog, limit = 30, 3
    t = make_engine(max_concurrent_runs_per_user=limit)
    owner = user()
    graph_id = t.save_graph(ONE_NODE, owner)
    ids = [t.submit(graph_id, {}, owner) for _ in range(backlog)]
    most_at_once = 0
    while t.step():
        most_at_once = max(most_at_once, statuses(t, ids).count(S.RUNNING))
    assert statuses(t, ids) == [S.COMPLETED] * backlog
    assert most_at_once == limit
    run_messages = [job for job in t.dispatcher.sent if job.kind == RUN_GRAPH]
    assert backlog <= len(run_messages) <= 2 * backlog


def test_the_end_of_a_run_hands_its_slot_on_in_its_own_commit(make_engine: MakeEngine) -> None:
    t = make_engine(max_concurrent_runs_per_user=1)
    engine, sent = t.engine, t.dispatcher
    owner = user()
    graph_id = t.save_graph(ONE_NODE, owner)
    ids = [t.submit(graph_id, {}, owner) for _ in range(3)]
    first, second, _ = ids
    sent.queued.clear()  # the test takes each step itself
    # Each run_graph: the first run starts (its node is sent from the admission), the others
    # wait and send nothing.
    assert [start_run(engine, i) for i in ids] == [False, False, False]
    assert statuses(t, ids) == [S.RUNNING, S.QUEUED, S.QUEUED]
    [first_node] = sent.nodes()
    assert first_node.graph_exec_id == first

    # The first run's end cannot send the next run's node: the end and the hand-over are
    # one transaction, so neither happened, and the node task's retry does both.
    def broker_down(job: Job) -> None:
        raise BrokerError("connection refused")

    sent.on_send = broker_down
    with pytest.raises(BrokerError):
        execute_node(engine, first_node.node_exec_id)
    assert statuses(t, ids) == [S.RUNNING, S.QUEUED, S.QUEUED]
    sent.on_send = None
    advance(engine, first)  # the step the retried node task wakes
    assert statuses(t, ids) == [S.COMPLETED, S.RUNNING, S.QUEUED]
    assert [n.graph_exec_id for n in sent.nodes()] == [first, second]
    run_messages = [job.graph_exec_id for job in sent.sent if job.kind == RUN_GRAPH]
    assert run_messages == ids  # one run_graph per run: its submission's


def test_a_child_run_takes_no_slot_and_is_refused_once_its_parent_was_terminated(
    make_engine: MakeEngine,
) -> None:
    t = make_engine(max_concurrent_runs_per_user=1)
    engine = t.engine
    owner, other = user(), user()
    graph_id = t.save_graph(ONE_NODE, owner)
    parent = t.submit(t.save_graph(ONE_NODE, other), {}, other)
    api.cancel(parent, other, engine=engine)
    first = t.submit(graph_id, {}, owner)
    child = create_execution(engine, RunRequest(graph_id, owner, parent_execution_id=first))
    orphan = create_execution(engine, RunRequest(graph_id, owner, parent_execution_id=parent))
    last = t.submit(graph_id, {}, owner)
    runs = [first, child, orphan, last]
    t.dispatcher.queued.clear()
    assert [start_run(engine, i) for i in runs] == [False] * 4

    # The child starts although its user's only slot is taken (by its parent); the run whose
    # parent was terminated never starts; the last run waits for the slot.
    assert statuses(t, runs) == [S.RUNNING, S.RUNNING, S.TERMINATED, S.QUEUED]
    assert t.execution(orphan, owner).error == "its parent execution was terminated"
    assert [n.graph_exec_id for n in t.dispatcher.nodes()] == [first, child]


class KilledAfterSend(Exception):
    """Stands for a process killed after it sent a message, before its commit."""


def test_a_run_whose_admission_was_lost_after_its_node_was_sent_still_completes_once(
    make_engine: MakeEngine,
) -> None:
    """The end of a run sends the next run's node, and its transaction is then lost: the node
    may run while its run is still QUEUED. The retried end admits the run again, and its step
    delivers what the node recorded and finishes it."""
    t = make_engine(max_concurrent_runs_per_user=1)
    engine, sent = t.engine, t.dispatcher
    owner = user()
    graph_id = t.save_graph(ADD_ONE, owner)
    first, second = (t.submit(graph_id, {"x": x}, owner) for x in (1, 2))
    sent.queued.clear()
    assert [start_run(engine, i) for i in (first, second)] == [False, False]
    while (job := sent.take()) is not None and job.node_id != "out":
        t.perform(job)  # the first run's nodes, up to its last
    assert job is not None and job.node is not None

    def killed_after_send(sent_job: Job) -> None:
        sent.queued.append(sent_job)
        raise KilledAfterSend()

    sent.on_send = killed_after_send
    with pytest.raises(KilledAfterSend):
        t.perform(job)  # the first run's end sends the second's node
    sent.on_send = None
    assert statuses(t, [first, second]) == [S.RUNNING, S.QUEUED]
    second_node = sent.take()
    assert second_node is not None and second_node.graph_exec_id == second
    t.perform(second_node)  # the second run's node runs anyway

    advance(engine, first)  # the retried end: hands the slot on again
    assert statuses(t, [first, second]) == [S.COMPLETED, S.RUNNING]
    t.drain()  # the second run's run_graph takes the step: nothing else is left to send
    views = [t.execution(i, owner) for i in (first, second)]
    assert [v.status for v in views] == [S.COMPLETED, S.COMPLETED]
    assert [v.outputs for v in views] == [{"sum": [2]}, {"sum": [3]}]
    assert [len(v.node_executions) for v in views] == [3, 3]
