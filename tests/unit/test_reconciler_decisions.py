"""The reconciler's decisions, in-process on SQLite and the in-memory Redis stand-in: what one
pass sends for which run, what it leaves alone, and what it reports. (The same passes on real
services and workers: tests/faults/test_reconciler.py.)"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from autoexec import api, tasks
from autoexec.blocks.registry import load_registry
from autoexec.coordination import make_coordinator
from autoexec.engine.context import Engine
from autoexec.engine.reconciler import Report, reconcile
from autoexec.errors import InputValidationError
from autoexec.settings import load_settings
from autoexec.statuses import ExecutionStatus
from autoexec.store import executions as repo
from autoexec.store.db import Database
from autoexec.store.transitions import transition_graph
from autoexec.testing import InMemoryDispatcher

S = ExecutionStatus
ONE_NODE = {
    "name": "one node",
    "nodes": [{"id": "x", "block_id": "agent_input", "input_default": {"name": "x"}}],
    "links": [],
}


@pytest.fixture
def dispatcher() -> InMemoryDispatcher:
    return InMemoryDispatcher()


def sent(dispatcher: InMemoryDispatcher) -> list[str]:
    """What the engine sent (nothing consumes it)."""
    return [str(job) for job in dispatcher.sent]


@pytest.fixture
def engine(sqlite_url: str, dispatcher: InMemoryDispatcher) -> Iterator[Engine]:
    redis_url = f"memory://reconciler-{uuid.uuid4().hex}"
    settings = load_settings(
        database_url=sqlite_url, redis_url=redis_url, max_concurrent_runs_per_user=1
    )
    database = Database(sqlite_url)
    yield Engine(settings, database, make_coordinator(redis_url), load_registry(), dispatcher)
    database.dispose()


def submit(engine: Engine, owner: str = "ada") -> str:
    graph_id, _ = api.save_graph(ONE_NODE, owner, engine=engine)
    return api.execute_graph(graph_id, owner, {"x": 1}, engine=engine)


def start(engine: Engine, graph_exec_id: str) -> None:
    with engine.db.session() as session:
        assert transition_graph(session, graph_exec_id, S.RUNNING)


def test_a_queued_run_is_published_again_within_its_users_free_slots(
    engine: Engine, dispatcher: InMemoryDispatcher
) -> None:
    first, second = submit(engine), submit(engine)
    dispatcher.sent.clear()

    assert reconcile(engine, older_than_seconds=300) == Report()
    assert reconcile(engine, older_than_seconds=0) == Report(republished_runs=1, waiting_runs=1)
    assert sent(dispatcher) == [f"run_graph {first}"]

    start(engine, first)  # the user's one slot is taken: the other run waits for it
    dispatcher.sent.clear()
    assert reconcile(engine, older_than_seconds=0).republished_runs == 0
    assert f"run_graph {second}" not in sent(dispatcher)


def test_a_running_run_gets_its_queued_nodes_sent_under_one_task_id_and_a_step(
    engine: Engine, dispatcher: InMemoryDispatcher
) -> None:
    run = submit(engine)
    start(engine, run)
    dispatcher.sent.clear()

    assert reconcile(engine, older_than_seconds=0) == Report(dispatched_nodes=1, woken_runs=1)
    with engine.db.session() as session:
        [node] = repo.node_executions(session, run)
        assert node.dispatched and node.celery_task_id
        task_id = node.celery_task_id
    assert sent(dispatcher) == [f"execute_node x {task_id}", f"advance_graph {run}"]

    dispatcher.sent.clear()
    assert reconcile(engine, older_than_seconds=0) == Report(resent_nodes=1, woken_runs=1)
    assert sent(dispatcher) == [f"execute_node x {task_id}", f"advance_graph {run}"]


def test_a_run_whose_only_active_node_runs_is_left_to_it(
    engine: Engine, dispatcher: InMemoryDispatcher
) -> None:
    run = submit(engine)
    start(engine, run)
    with engine.db.session() as session:
        [node] = repo.node_executions(session, run)
        node.status = S.RUNNING
    engine.coordinator.note_node_alive(run, node.id)  # its task is alive
    dispatcher.sent.clear()

    assert reconcile(engine, older_than_seconds=0) == Report(owned_runs=1)
    assert sent(dispatcher) == []


@pytest.mark.parametrize("age", [-1, "ten", True, float("nan")])
def test_the_task_refuses_an_age_that_is_not_a_number_of_seconds(age: object) -> None:
    with pytest.raises(InputValidationError, match="older_than_seconds"):
        tasks.reconcile.run(older_than_seconds=age)


def test_a_report_names_every_count() -> None:
    report = Report(republished_runs=2, resent_nodes=1, woken_runs=1)
    assert report.as_dict() == {
        "republished_runs": 2,
        "waiting_runs": 0,
        "resent_nodes": 1,
        "dispatched_nodes": 0,
        "woken_runs": 1,
        "owned_runs": 0,
        "lost_nodes_resent": 0,
        "lost_nodes_terminated": 0,
        "repaired_nodes": 0,
        "terminated_nodes": 0,
        "resumed_parents": 0,
        "cancelled_orphans": 0,
    }
    assert "republished runs: 2" in report.lines()
    assert str(report).startswith("republished runs: 2, waiting runs: 0, resent nodes: 1")


def test_runs_left_waiting_for_a_slot_or_to_their_nodes_are_not_an_action() -> None:
    assert not Report(waiting_runs=3, owned_runs=2).acted
    assert Report(dispatched_nodes=1).acted
    assert Report(terminated_nodes=1).acted
