"""Status changes (SPEC §2) are one conditional UPDATE each: applied or refused, never both."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from autoexec.statuses import ExecutionStatus
from autoexec.store.db import Database
from autoexec.store.executions import request_cancel
from autoexec.store.tables import GraphExecution, GraphVersion, NodeExecution, User
from autoexec.store.transitions import (
    note_node_retry,
    restart_running_node,
    start_queued_node,
    transition_graph,
    transition_node,
)

S = ExecutionStatus
RACE_ROUNDS = 20


@pytest.fixture(params=["postgresql", "sqlite"])
def any_db(request: pytest.FixtureRequest) -> Iterator[Database]:
    """The same tests on PostgreSQL and on SQLite."""
    if request.param == "postgresql":
        yield request.getfixturevalue("db")
        return
    database = Database(request.getfixturevalue("sqlite_url"))
    yield database
    database.dispose()


def create_graph_execution(database: Database, status: ExecutionStatus = S.QUEUED) -> str:
    user_id, graph_id, exec_id = (str(uuid.uuid4()) for _ in range(3))
    with database.session() as session:
        session.add(User(id=user_id))
        session.flush()
        session.add(
            GraphVersion(
                id=graph_id,
                version=1,
                user_id=user_id,
                name="g",
                definition={"nodes": [], "links": []},
                content_hash="0" * 64,
            )
        )
        session.flush()
        session.add(
            GraphExecution(
                id=exec_id, graph_id=graph_id, graph_version=1, user_id=user_id, status=status
            )
        )
    return exec_id


def create_node_execution(
    database: Database, graph_exec_id: str, status: ExecutionStatus = S.INCOMPLETE
) -> int:
    with database.session() as session:
        node = NodeExecution(graph_exec_id=graph_exec_id, node_id="n1", block_id="b", status=status)
        session.add(node)
        session.flush()
        return node.id


def graph_row(database: Database, graph_exec_id: str) -> GraphExecution:
    with database.session() as session:
        row = session.get(GraphExecution, graph_exec_id)
        assert row is not None
        return row


def node_row(database: Database, node_exec_id: int) -> NodeExecution:
    with database.session() as session:
        row = session.get(NodeExecution, node_exec_id)
        assert row is not None
        return row


def move_graph(database: Database, graph_exec_id: str, target: ExecutionStatus) -> bool:
    with database.session() as session:
        return transition_graph(session, graph_exec_id, target)


def move_node(database: Database, node_exec_id: int, target: ExecutionStatus) -> bool:
    with database.session() as session:
        return transition_node(session, node_exec_id, target)


def test_graph_queued_running_completed_sets_timestamps(any_db: Database) -> None:
    exec_id = create_graph_execution(any_db)
    assert graph_row(any_db, exec_id).started_at is None

    assert move_graph(any_db, exec_id, S.RUNNING)
    running = graph_row(any_db, exec_id)
    assert running.status == S.RUNNING
    assert running.started_at is not None
    assert running.ended_at is None

    assert move_graph(any_db, exec_id, S.COMPLETED)
    completed = graph_row(any_db, exec_id)
    assert completed.status == S.COMPLETED
    assert completed.started_at == running.started_at
    assert completed.ended_at is not None
    assert completed.ended_at >= completed.started_at


@pytest.mark.parametrize(
    ("start", "target"),
    [
        (S.COMPLETED, S.RUNNING),
        (S.TERMINATED, S.COMPLETED),
        (S.FAILED, S.QUEUED),
        (S.QUEUED, S.COMPLETED),
        (S.RUNNING, S.RUNNING),
    ],
)
def test_graph_refuses_transitions_spec_forbids(
    any_db: Database, start: ExecutionStatus, target: ExecutionStatus
) -> None:
    exec_id = create_graph_execution(any_db, status=start)
    before = graph_row(any_db, exec_id)

    assert not move_graph(any_db, exec_id, target)

    after = graph_row(any_db, exec_id)
    assert after.status == start
    assert (after.started_at, after.ended_at, after.updated_at) == (
        before.started_at,
        before.ended_at,
        before.updated_at,
    )


def test_graph_resumed_from_review_keeps_its_first_start(any_db: Database) -> None:
    exec_id = create_graph_execution(any_db)
    assert move_graph(any_db, exec_id, S.RUNNING)
    first_start = graph_row(any_db, exec_id).started_at

    assert move_graph(any_db, exec_id, S.REVIEW)
    assert move_graph(any_db, exec_id, S.RUNNING)

    assert graph_row(any_db, exec_id).started_at == first_start


def test_graph_transition_of_unknown_execution_is_refused(any_db: Database) -> None:
    assert not move_graph(any_db, str(uuid.uuid4()), S.RUNNING)


def test_graph_transition_stores_extra_fields(any_db: Database) -> None:
    exec_id = create_graph_execution(any_db, status=S.RUNNING)
    with any_db.session() as session:
        assert transition_graph(session, exec_id, S.FAILED, error="boom")
    row = graph_row(any_db, exec_id)
    assert (row.status, row.error) == (S.FAILED, "boom")


def test_node_incomplete_queued_running_completed_sets_timestamps(any_db: Database) -> None:
    node_id = create_node_execution(any_db, create_graph_execution(any_db))

    assert move_node(any_db, node_id, S.QUEUED)
    queued = node_row(any_db, node_id)
    assert queued.status == S.QUEUED
    assert queued.queued_at is not None
    assert queued.started_at is None

    assert move_node(any_db, node_id, S.RUNNING)
    running = node_row(any_db, node_id)
    assert running.status == S.RUNNING
    assert running.started_at is not None
    assert running.ended_at is None

    assert move_node(any_db, node_id, S.COMPLETED)
    completed = node_row(any_db, node_id)
    assert completed.status == S.COMPLETED
    assert completed.ended_at is not None
    assert completed.queued_at == queued.queued_at
    assert completed.started_at == running.started_at


@pytest.mark.parametrize(
    ("start", "target"),
    [
        (S.COMPLETED, S.RUNNING),
        (S.TERMINATED, S.COMPLETED),
        (S.FAILED, S.QUEUED),
        (S.INCOMPLETE, S.RUNNING),
    ],
)
def test_node_refuses_transitions_spec_forbids(
    any_db: Database, start: ExecutionStatus, target: ExecutionStatus
) -> None:
    node_id = create_node_execution(any_db, create_graph_execution(any_db), status=start)

    assert not move_node(any_db, node_id, target)

    assert node_row(any_db, node_id).status == start


def test_node_allowed_from_narrows_the_sources(any_db: Database) -> None:
    node_id = create_node_execution(any_db, create_graph_execution(any_db), status=S.QUEUED)
    with any_db.session() as session:
        applied = transition_node(
            session, node_id, S.COMPLETED, allowed_from=frozenset({S.INCOMPLETE})
        )
    assert not applied
    assert node_row(any_db, node_id).status == S.QUEUED

    with any_db.session() as session:
        applied = transition_node(session, node_id, S.RUNNING, allowed_from=frozenset({S.QUEUED}))
    assert applied
    assert node_row(any_db, node_id).status == S.RUNNING


def test_node_allowed_from_never_widens_the_sources(any_db: Database) -> None:
    node_id = create_node_execution(any_db, create_graph_execution(any_db), status=S.COMPLETED)
    with any_db.session() as session:
        applied = transition_node(
            session, node_id, S.RUNNING, allowed_from=frozenset({S.COMPLETED})
        )
    assert not applied
    assert node_row(any_db, node_id).status == S.COMPLETED


def race(first: Callable[[], bool], second: Callable[[], bool]) -> list[bool]:
    """Run two actions at the same moment, each in its own thread; their results, in order."""
    barrier = threading.Barrier(2, timeout=10)

    def at_the_barrier(action: Callable[[], bool]) -> bool:
        barrier.wait()
        return action()

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(at_the_barrier, action) for action in (first, second)]
        return [future.result(timeout=30) for future in futures]


def test_concurrent_graph_transitions_exactly_one_wins(db: Database) -> None:
    for _ in range(RACE_ROUNDS):
        exec_id = create_graph_execution(db, status=S.RUNNING)
        outcomes = race(
            lambda exec_id=exec_id: move_graph(db, exec_id, S.COMPLETED),
            lambda exec_id=exec_id: move_graph(db, exec_id, S.TERMINATED),
        )
        assert sorted(outcomes) == [False, True]
        expected = S.COMPLETED if outcomes[0] else S.TERMINATED
        assert graph_row(db, exec_id).status == expected


def test_concurrent_node_transitions_exactly_one_wins(db: Database) -> None:
    exec_id = create_graph_execution(db, status=S.RUNNING)
    for _ in range(RACE_ROUNDS):
        node_id = create_node_execution(db, exec_id, status=S.RUNNING)
        outcomes = race(
            lambda node_id=node_id: move_node(db, node_id, S.COMPLETED),
            lambda node_id=node_id: move_node(db, node_id, S.TERMINATED),
        )
        assert sorted(outcomes) == [False, True]
        expected = S.COMPLETED if outcomes[0] else S.TERMINATED
        assert node_row(db, node_id).status == expected


def test_claim_of_a_queued_node_returns_the_view_it_had_before(any_db: Database) -> None:
    exec_id = create_graph_execution(any_db, status=S.RUNNING)
    node_id = create_node_execution(any_db, exec_id, status=S.QUEUED)

    with any_db.single_statement() as session:
        view = start_queued_node(session, node_id)

    assert view is not None
    assert (view.node_exec_id, view.graph_exec_id, view.node_id) == (node_id, exec_id, "n1")
    assert (view.status, view.attempt, view.run_status) == (S.QUEUED, 0, S.RUNNING)
    row = node_row(any_db, node_id)
    assert (row.status, row.attempt) == (S.RUNNING, 1)
    with any_db.single_statement() as session:
        assert start_queued_node(session, node_id) is None  # a second claim is refused


def test_restart_takes_over_only_a_running_node(any_db: Database) -> None:
    exec_id = create_graph_execution(any_db, status=S.RUNNING)
    running = create_node_execution(any_db, exec_id, status=S.RUNNING)
    completed = create_node_execution(any_db, exec_id, status=S.COMPLETED)

    with any_db.session() as session:
        assert restart_running_node(session, running, attempt=2, worker_lost=True)
        assert not restart_running_node(session, completed, attempt=2, worker_lost=True)

    row = node_row(any_db, running)
    assert (row.attempt, row.worker_losses) == (2, 1)
    assert node_row(any_db, completed).attempt == 0


def test_a_retry_is_noted_only_by_the_attempt_that_owns_the_node(any_db: Database) -> None:
    node_id = create_node_execution(any_db, create_graph_execution(any_db, status=S.RUNNING))
    with any_db.session() as session:
        assert restart_running_node(session, node_id, attempt=1, worker_lost=False) is False
        assert transition_node(session, node_id, S.QUEUED)
        assert transition_node(session, node_id, S.RUNNING, attempt=1)

    with any_db.session() as session:
        note_node_retry(session, node_id, attempt=2, stats={"retries": ["stale"]})
    assert node_row(any_db, node_id).stats == {}
    with any_db.session() as session:
        note_node_retry(session, node_id, attempt=1, stats={"retries": ["failed once"]})
    assert node_row(any_db, node_id).stats == {"retries": ["failed once"]}


def test_a_cancel_request_keeps_the_time_it_was_first_made(any_db: Database) -> None:
    exec_id = create_graph_execution(any_db, status=S.RUNNING)
    with any_db.session() as session:
        request_cancel(session, [exec_id])
    first = graph_row(any_db, exec_id).cancel_requested_at
    assert first is not None

    with any_db.session() as session:
        request_cancel(session, [exec_id])
    assert graph_row(any_db, exec_id).cancel_requested_at == first
