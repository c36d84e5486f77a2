"""Admission (SPEC §5): at most max_concurrent_runs_per_user RUNNING; the rest wait QUEUED and
start oldest first as slots free up."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import pytest
from kombu.exceptions import OperationalError as BrokerError

from autoexec import api
from autoexec.engine.admission import start_run
from autoexec.engine.context import Engine
from autoexec.engine.node_execution import execute_node
from autoexec.engine.orchestrator import advance
from autoexec.engine.submission import RunRequest, create_execution
from autoexec.statuses import ExecutionStatus
from autoexec.store import executions as repo
from autoexec.store.executions import NodeTask
from tests.integration import publish_counter
from tests.integration.conftest import Cluster, private_queues, worker_process
from tests.integration.test_engine import ADD_ONE, graph, node, user

S = ExecutionStatus

PAUSE = graph(
    [
        node("x", "agent_input", name="x"),
        node("pause", "wait", seconds=0.6),
        node("out", "agent_output", name="x"),
    ],
    [("x", "result", "pause", "data"), ("pause", "output", "out", "value")],
)


def test_runs_beyond_the_user_limit_wait_and_start_oldest_first(
    cluster: Cluster, tmp_path: Path
) -> None:
    owner, other = (f"user-{uuid.uuid4().hex[:8]}" for _ in range(2))
    with private_queues(cluster) as queues:
        engine = queues.engine
        env = {**queues.env, "AUTOEXEC_MAX_CONCURRENT_RUNS_PER_USER": "2"}
        graph_id, _ = api.save_graph(PAUSE, owner, engine=engine)
        other_graph, _ = api.save_graph(PAUSE, other, engine=engine)
        with worker_process(env, 4, tmp_path / "worker.log", "admission"):
            ids = [api.execute_graph(graph_id, owner, {"x": i}, engine=engine) for i in range(5)]
            other_id = api.execute_graph(other_graph, other, {"x": 99}, engine=engine)
            views = [api.wait(i, owner, timeout=60, engine=engine) for i in ids]
            other_view = api.wait(other_id, other, timeout=60, engine=engine)
    assert [v.status for v in views] == [S.COMPLETED] * 5
    assert [v.outputs["x"] for v in views] == [[i] for i in range(5)]
    spans = [(v.started_at, v.ended_at) for v in views]
    for moment, _ in spans:
        running = sum(1 for start, end in spans if start <= moment < end)
        assert running <= 2
    # Oldest first: free slots go to the oldest waiting runs. Runs given slots at the same
    # moment may start in either order, so a run's place in the start order is at most
    # (limit - 1) away from its place in the submission order.
    start_order = sorted(range(5), key=lambda i: spans[i][0])
    assert all(abs(start_order.index(i) - i) < 2 for i in range(5)), start_order
    # Another user's run is not held back by this user's backlog.
    assert other_view.status is S.COMPLETED
    assert other_view.started_at < spans[-1][0]


ONE_NODE = graph([node("sum", "calculator", operation="add", a=1, b=1)], [])
BACKLOG = 200
LIMIT = 3


def test_a_backlog_is_admitted_with_at_most_two_run_messages_per_run(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 8 item 6: a run waiting for a slot is not re-sent a message each time a slot frees
    or another run arrives. Its own submission is one message; the slot handed to it is one."""
    user, tag = f"user-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    monkeypatch.setenv(publish_counter.ENV, tag)
    with private_queues(cluster) as queues:
        engine = queues.engine
        modules = f"{queues.env['AUTOEXEC_BLOCK_MODULES']},{publish_counter.MODULE}"
        env = {
            **queues.env,
            "AUTOEXEC_BLOCK_MODULES": modules,
            "AUTOEXEC_MAX_CONCURRENT_RUNS_PER_USER": str(LIMIT),
            publish_counter.ENV: tag,
        }
        graph_id, _ = api.save_graph(ONE_NODE, user, engine=engine)
        try:
            with worker_process(env, 2, tmp_path / "worker.log", "backlog"):
                ids = [api.execute_graph(graph_id, user, engine=engine) for _ in range(BACKLOG)]
                views = [api.wait(i, user, timeout=300, engine=engine) for i in ids]
            published = publish_counter.published(tag)
        finally:
            publish_counter.forget(tag)
    assert [v.status for v in views] == [S.COMPLETED] * BACKLOG
    assert all(v.outputs == {} and len(v.node_executions) == 1 for v in views)
    assert _most_at_once([(v.started_at, v.ended_at) for v in views]) <= LIMIT
    assert BACKLOG <= published["autoexec.run_graph"] <= 2 * BACKLOG, published


def _most_at_once(spans: list[tuple[datetime, datetime]]) -> int:
    return max(sum(1 for start, end in spans if start <= moment < end) for moment, _ in spans)


class KilledAfterSend(Exception):
    """Stands for a process killed after it sent a message, before its commit."""


@dataclass
class Sent:
    """A dispatcher that records what would go to the broker (the test runs the nodes itself);
    with ``broker_down`` sending a node raises as a publish to an unreachable broker does."""

    runs: list[str] = field(default_factory=list)
    nodes: list[NodeTask] = field(default_factory=list)
    broker_down: bool = False
    fail_after_send: bool = False  # the node is sent, then the sender's transaction is lost
    ran: set[int] = field(default_factory=set)  # node executions the test ran

    def run_graph(self, graph_exec_id: str) -> None:
        self.runs.append(graph_exec_id)

    def advance_graph(self, graph_exec_id: str, countdown: float | None = None) -> None:
        pass

    def execute_node(self, task: NodeTask) -> None:
        if self.broker_down:
            raise BrokerError("connection refused")
        self.nodes.append(task)
        if self.fail_after_send:
            raise KilledAfterSend()

    def revoke(self, task_ids: list[str]) -> None:
        pass


def statuses(engine: Engine, ids: list[str]) -> list[ExecutionStatus]:
    with engine.db.session() as session:
        return [repo.status_of(session, i) for i in ids]


def test_the_end_of_a_run_hands_its_slot_on_in_its_own_commit(cluster: Cluster) -> None:
    sent = Sent()
    settings = cluster.engine.settings.model_copy(update={"max_concurrent_runs_per_user": 1})
    engine = replace(cluster.engine, dispatcher=sent, settings=settings)
    owner = user()
    graph_id, _ = api.save_graph(ONE_NODE, owner, engine=engine)
    ids = [api.execute_graph(graph_id, owner, engine=engine) for _ in range(3)]
    first, second, _ = ids
    # Each run_graph: the first run starts (its node is sent from the admission), the others
    # wait and send nothing.
    assert [start_run(engine, i) for i in ids] == [False, False, False]
    assert statuses(engine, ids) == [S.RUNNING, S.QUEUED, S.QUEUED]
    assert [t.graph_exec_id for t in sent.nodes] == [first]

    # The first run's end cannot send the next run's node: the end and the hand-over are
    # one transaction, so neither happened, and the node task's retry does both.
    sent.broker_down = True
    with pytest.raises(BrokerError):
        execute_node(engine, sent.nodes[0].node_exec_id)
    assert statuses(engine, ids) == [S.RUNNING, S.QUEUED, S.QUEUED]
    sent.broker_down = False
    advance(engine, first)  # the step the retried node task wakes
    assert statuses(engine, ids) == [S.COMPLETED, S.RUNNING, S.QUEUED]
    assert [t.graph_exec_id for t in sent.nodes] == [first, second]
    assert sent.runs == ids  # one run_graph per run: its submission's


def test_a_child_run_takes_no_slot_and_is_refused_once_its_parent_was_terminated(
    cluster: Cluster,
) -> None:
    sent = Sent()
    settings = cluster.engine.settings.model_copy(update={"max_concurrent_runs_per_user": 1})
    engine = replace(cluster.engine, dispatcher=sent, settings=settings)
    owner, other = user(), user()
    graph_id, _ = api.save_graph(ONE_NODE, owner, engine=engine)
    other_graph, _ = api.save_graph(ONE_NODE, other, engine=engine)
    parent = api.execute_graph(other_graph, other, engine=engine)
    api.cancel(parent, other, engine=engine)
    first = api.execute_graph(graph_id, owner, engine=engine)
    child = create_execution(engine, RunRequest(graph_id, owner, parent_execution_id=first))
    orphan = create_execution(engine, RunRequest(graph_id, owner, parent_execution_id=parent))
    last = api.execute_graph(graph_id, owner, engine=engine)
    runs = [first, child, orphan, last]
    assert [start_run(engine, i) for i in runs] == [False] * 4

    # The child starts although its user's only slot is taken (by its parent); the run whose
    # parent was terminated never starts; the last run waits for the slot.
    assert statuses(engine, runs) == [S.RUNNING, S.RUNNING, S.TERMINATED, S.QUEUED]
    assert api.get_execution(orphan, owner, engine=engine).error == (
        "its parent execution was terminated"
    )
    assert [t.graph_exec_id for t in sent.nodes] == [first, child]


def test_a_run_whose_admission_was_lost_after_its_node_was_sent_still_completes_once(
    cluster: Cluster,
) -> None:
    """The end of a run sends the next run's node, and its transaction is then lost: the node
    may run while its run is still QUEUED. The retried end admits the run again, and its step
    delivers what the node recorded and finishes it."""
    sent = Sent()
    settings = cluster.engine.settings.model_copy(update={"max_concurrent_runs_per_user": 1})
    engine = replace(cluster.engine, dispatcher=sent, settings=settings)
    owner = user()
    graph_id, _ = api.save_graph(ADD_ONE, owner, engine=engine)
    first, second = (api.execute_graph(graph_id, owner, {"x": x}, engine=engine) for x in (1, 2))
    assert [start_run(engine, i) for i in (first, second)] == [False, False]
    last = run_until(engine, sent, first, "out")
    assert last is not None

    sent.fail_after_send = True
    with pytest.raises(KilledAfterSend):
        run_node(engine, sent, last)  # the first run's end sends the second's node
    sent.fail_after_send = False
    assert statuses(engine, [first, second]) == [S.RUNNING, S.QUEUED]
    run_node(engine, sent, sent.nodes[-1])  # the second run's node runs anyway

    advance(engine, first)  # the retried end: hands the slot on again
    assert statuses(engine, [first, second]) == [S.COMPLETED, S.RUNNING]
    assert sent.runs[-1] == second  # nothing left to send: its run_graph takes the step
    assert start_run(engine, second)
    advance(engine, second)
    run_until(engine, sent, second, None)
    views = [api.get_execution(i, owner, engine=engine) for i in (first, second)]
    assert [v.status for v in views] == [S.COMPLETED, S.COMPLETED]
    assert [v.outputs for v in views] == [{"sum": [2]}, {"sum": [3]}]
    assert [len(v.node_executions) for v in views] == [3, 3]


def run_until(
    engine: Engine, sent: Sent, graph_exec_id: str, node_id: str | None
) -> NodeTask | None:
    """Run the sent nodes of one execution in order until the next one is of ``node_id``
    (returned, not run) or, with None, until none is left."""
    while True:
        todo = [
            t
            for t in sent.nodes
            if t.graph_exec_id == graph_exec_id and t.node_exec_id not in sent.ran
        ]
        if not todo or todo[0].node_id == node_id:
            return todo[0] if todo else None
        run_node(engine, sent, todo[0])


def run_node(engine: Engine, sent: Sent, task: NodeTask) -> None:
    sent.ran.add(task.node_exec_id)
    execute_node(engine, task.node_exec_id)
