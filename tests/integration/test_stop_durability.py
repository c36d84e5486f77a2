"""Stopping a run survives a crash and disagreeing clocks (SPEC §7): driven step by step in this
process against the cluster's PostgreSQL and Redis, a worker killed between two lines is a step
that raises there; its message is then re-delivered, as RabbitMQ would."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from autoexec import api
from autoexec.blocks.registry import load_registry
from autoexec.coordination import Keys
from autoexec.engine import node_execution, output_buffer
from autoexec.engine.admission import admit
from autoexec.engine.cancellation import Stop, stop_execution
from autoexec.engine.context import Engine
from autoexec.engine.node_execution import execute_node
from autoexec.engine.orchestrator import advance
from autoexec.statuses import ExecutionStatus
from autoexec.store.tables import utcnow
from autoexec.store.transitions import terminate_nodes
from autoexec.testing import InMemoryDispatcher
from tests.integration.conftest import Cluster
from tests.integration.test_engine import graph, node, user

S = ExecutionStatus
MISSING = "block 'test_shout' of node 'loud' is not registered on worker"


class KilledHere(BaseException):
    """Where the test kills the worker: a BaseException, as no handler of the engine's can
    catch a kill (it fails the node on an unexpected Exception of its own)."""


class CrashOnStopFlag:
    """The cluster's coordinator, except that the worker dies when it sets a stop flag."""

    def __init__(self, coordinator: Any) -> None:
        self.coordinator = coordinator

    def request_stop(self, graph_exec_id: str) -> None:
        raise KilledHere()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.coordinator, name)


def shout_with_handled_error() -> dict[str, Any]:
    """x -> loud (test_shout) -> out, with loud's error pin linked to an output."""
    return graph(
        [
            node("x", "agent_input", name="x"),
            node("loud", "test_shout"),
            node("out", "agent_output", name="out"),
            node("problem", "agent_output", name="problem"),
        ],
        [
            ("x", "result", "loud", "text"),
            ("loud", "result", "out", "value"),
            ("loud", "error", "problem", "value"),
        ],
    )


def started(engine: Engine, definition: dict[str, Any], **options: Any) -> tuple[str, str]:
    owner = user()
    graph_id, _ = api.save_graph(definition, owner, engine=engine)
    exec_id = api.execute_graph(graph_id, owner, {"x": "hi"}, engine=engine, **options)
    assert admit(engine, exec_id)
    advance(engine, exec_id)
    return exec_id, owner


def node_exec_of(engine: Engine, exec_id: str, owner: str, node_id: str) -> int:
    view = api.get_execution(exec_id, owner, engine=engine)
    (found,) = [n for n in view.node_executions if n.node_id == node_id]
    return found.id


def run_queued(steps: InMemoryDispatcher, engine: Engine, exec_id: str) -> None:
    """Run every dispatched node and the steps they wake, until nothing is left."""
    while nodes := steps.take_nodes():
        for node_exec_id in nodes:
            execute_node(engine, node_exec_id)
        advance(engine, exec_id)


def test_a_worker_killed_after_a_missing_block_ends_the_run_failed_not_completed(
    cluster: Cluster,
) -> None:
    steps = InMemoryDispatcher()
    engine = replace(cluster.engine, dispatcher=steps)
    without_block = replace(engine, registry=load_registry(()))
    exec_id, owner = started(engine, shout_with_handled_error())
    execute_node(engine, steps.take_node())  # x
    advance(engine, exec_id)
    (loud,) = steps.take_nodes()

    dying = replace(without_block, coordinator=CrashOnStopFlag(engine.coordinator))
    with pytest.raises(KilledHere):
        execute_node(dying, loud)
    execute_node(without_block, loud)  # the re-delivered message
    advance(engine, exec_id)

    view = api.get_execution(exec_id, owner, engine=engine)
    assert view.status is S.FAILED
    assert view.error is not None and view.error.startswith(MISSING)
    (loud_view,) = [n for n in view.node_executions if n.node_id == "loud"]
    assert loud_view.status is S.FAILED
    assert loud_view.error == view.error
    assert view.stats["node_error_count"] == 1


class RefusedEnds:
    """A trigger: PostgreSQL fails every status change of the runs listed in its table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.name = f"refuse_end_{uuid.uuid4().hex[:8]}"

    def sql(self, statement: str, **params: str) -> None:
        with self.engine.db.session() as session:
            session.execute(text(statement.replace("NAME", self.name)), params)

    def install(self) -> None:
        self.sql(
            "CREATE TABLE NAME (id varchar(36) PRIMARY KEY);"
            "CREATE FUNCTION NAME() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF EXISTS (SELECT 1 FROM NAME WHERE id = NEW.id) THEN "
            "RAISE EXCEPTION 'database error while ending the run'; END IF; "
            "RETURN NEW; END $$;"
            "CREATE TRIGGER NAME BEFORE UPDATE ON graph_executions FOR EACH ROW "
            "WHEN (NEW.status IS DISTINCT FROM OLD.status) EXECUTE FUNCTION NAME();"
        )

    def remove(self) -> None:
        self.sql("DROP TRIGGER NAME ON graph_executions; DROP FUNCTION NAME(); DROP TABLE NAME;")

    def refuse(self, exec_id: str) -> None:
        self.sql("INSERT INTO NAME VALUES (:id)", id=exec_id)

    def allow(self, exec_id: str) -> None:
        self.sql("DELETE FROM NAME WHERE id = :id", id=exec_id)


@pytest.fixture
def refused_ends(cluster: Cluster) -> Iterator[RefusedEnds]:
    trigger = RefusedEnds(cluster.engine)
    trigger.install()
    yield trigger
    trigger.remove()


def simple_graph() -> dict[str, Any]:
    return graph(
        [node("x", "agent_input", name="x"), node("out", "agent_output", name="out")],
        [("x", "result", "out", "value")],
    )


STOP = Stop(S.FAILED, "block 'b' of node 'n' is not registered on worker w")


def test_a_stop_the_database_refused_leaves_the_run_to_go_on(
    cluster: Cluster, refused_ends: RefusedEnds
) -> None:
    steps = InMemoryDispatcher()
    engine = replace(cluster.engine, dispatcher=steps)
    exec_id, owner = started(engine, simple_graph())
    refused_ends.refuse(exec_id)

    with pytest.raises(DBAPIError, match="database error while ending the run"):
        stop_execution(engine, exec_id, STOP)
    refused_ends.allow(exec_id)
    run_queued(steps, engine, exec_id)

    view = api.get_execution(exec_id, owner, engine=engine)
    assert view.status is S.COMPLETED
    assert view.outputs == {"out": ["hi"]}
    assert {n.node_id: n.status for n in view.node_executions} == {
        "x": S.COMPLETED,
        "out": S.COMPLETED,
    }


def test_a_stop_retried_after_a_database_error_ends_the_run_and_flags_its_nodes(
    cluster: Cluster, refused_ends: RefusedEnds
) -> None:
    steps = InMemoryDispatcher()
    engine = replace(cluster.engine, dispatcher=steps)
    exec_id, owner = started(engine, simple_graph())
    refused_ends.refuse(exec_id)
    with pytest.raises(DBAPIError):
        stop_execution(engine, exec_id, STOP)
    refused_ends.allow(exec_id)

    assert stop_execution(engine, exec_id, STOP) is True
    assert stop_execution(engine, exec_id, STOP) is False

    view = api.get_execution(exec_id, owner, engine=engine)
    assert (view.status, view.error) == (S.FAILED, STOP.reason)
    assert [(n.node_id, n.status) for n in view.node_executions] == [("x", S.TERMINATED)]
    assert engine.coordinator.stop_requested(exec_id)


def test_a_node_whose_clock_is_past_the_deadline_fails_the_run_whatever_the_other_clocks(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = InMemoryDispatcher()
    engine = replace(cluster.engine, dispatcher=steps)
    exec_id, owner = started(engine, simple_graph(), max_run_seconds=3600)

    def two_hours_ahead() -> datetime:
        return utcnow() + timedelta(hours=2)

    with monkeypatch.context() as clock:
        clock.setattr(node_execution, "utcnow", two_hours_ahead)
        # x's output stays in its buffer until x finds the deadline, and is never delivered.
        clock.setattr(output_buffer, "WINDOW_SECONDS", 60.0)
        execute_node(engine, steps.take_node())  # x, on the worker whose clock is ahead
    advance(engine, exec_id)  # on a host whose clock says the deadline is an hour away
    run_queued(steps, engine, exec_id)

    view = api.get_execution(exec_id, owner, engine=engine)
    assert (view.status, view.error) == (S.FAILED, "stopped: ran longer than max_run_seconds=3600")
    assert [(n.node_id, n.status) for n in view.node_executions] == [("x", S.TERMINATED)]


def test_a_cancel_that_ends_nothing_publishes_nothing(cluster: Cluster) -> None:
    steps = InMemoryDispatcher()
    engine = replace(cluster.engine, dispatcher=steps)
    exec_id, owner = started(engine, simple_graph())
    run_queued(steps, engine, exec_id)
    pubsub = engine.coordinator.client.pubsub()
    pubsub.subscribe(Keys.events(exec_id))
    pubsub.get_message(timeout=1.0)  # the subscription's confirmation

    assert stop_execution(engine, exec_id, Stop(S.TERMINATED, "cancelled")) is False

    assert pubsub.get_message(timeout=0.5) is None
    view = api.get_execution(exec_id, owner, engine=engine)
    assert view.status is S.COMPLETED
    pubsub.close()


def test_terminate_nodes_moves_only_the_statuses_asked_for(cluster: Cluster) -> None:
    steps = InMemoryDispatcher()
    engine = replace(cluster.engine, dispatcher=steps)
    exec_id, owner = started(engine, simple_graph())
    x = node_exec_of(engine, exec_id, owner, "x")

    with engine.db.session() as session:
        assert terminate_nodes(session, exec_id, frozenset({S.RUNNING})) == 0
    with engine.db.session() as session:
        assert terminate_nodes(session, exec_id, frozenset({S.QUEUED}), error="cancelled") == 1

    view = api.get_execution(exec_id, owner, engine=engine)
    (x_view,) = view.node_executions
    assert (x_view.id, x_view.status, x_view.error) == (x, S.TERMINATED, "cancelled")
