"""The reconciler resumes runs whose messages were lost, and leaves healthy runs alone.

A message is lost for real: the engine that submits (or runs a step in this process) has a
dispatcher that drops what it sends, as a publish that never reached the broker. The runs then
sit in the database exactly as such a loss leaves them; one reconciler pass (the
``autoexec reconcile`` command, the ``autoexec.reconcile`` task on a real worker, or the
function) must bring them to their exact outputs. The module has its own database, queues and
``-c 2`` worker, so the counts a pass reports are about these runs only.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from autoexec import api, tasks
from autoexec.engine import node_execution, orchestrator
from autoexec.engine.admission import admit
from autoexec.engine.context import Engine
from autoexec.engine.reconciler import ENDED_WITH_NODES_LEFT, Report, reconcile
from autoexec.statuses import ExecutionStatus
from autoexec.store import executions as repo
from autoexec.store.tables import GraphExecution, NodeExecution
from autoexec.store.transitions import start_queued_node, terminate_nodes, transition_graph
from autoexec.testing import InMemoryDispatcher
from tests.conftest import Services, migrated_database
from tests.integration.conftest import _delete_queues, _queue_env, environment, worker_process
from tests.waiting import wait_until

S = ExecutionStatus
ROOT = Path(__file__).resolve().parents[2]
AUTOEXEC = Path(sys.executable).parent / "autoexec"
TIMEOUT = 60.0

ADD_ONE = {
    "name": "add one",
    "nodes": [
        {"id": "x", "block_id": "agent_input", "input_default": {"name": "x"}},
        {"id": "calc", "block_id": "calculator", "input_default": {"operation": "add", "b": 1}},
        {"id": "out", "block_id": "agent_output", "input_default": {"name": "sum"}},
    ],
    "links": [
        {"source_id": "x", "source_name": "result", "sink_id": "calc", "sink_name": "a"},
        {"source_id": "calc", "source_name": "result", "sink_id": "out", "sink_name": "value"},
    ],
}
WAIT = {
    "name": "wait",
    "nodes": [
        {"id": "s", "block_id": "agent_input", "input_default": {"name": "s"}},
        {"id": "wait", "block_id": "wait", "input_default": {"data": "done"}},
        {"id": "out", "block_id": "agent_output", "input_default": {"name": "result"}},
    ],
    "links": [
        {"source_id": "s", "source_name": "result", "sink_id": "wait", "sink_name": "seconds"},
        {"source_id": "wait", "source_name": "output", "sink_id": "out", "sink_name": "value"},
    ],
}


def dropped(dispatcher: InMemoryDispatcher) -> list[str]:
    """What the engine sent through ``dispatcher``, which nothing consumes: lost messages."""
    return [str(job) for job in dispatcher.sent]


@dataclass
class Stack:
    engine: Engine  # sends through Celery to this module's worker
    env: dict[str, str]  # this module's settings, for a command run as a subprocess

    def lossy(self) -> tuple[Engine, InMemoryDispatcher]:
        dispatcher = InMemoryDispatcher()
        return replace(self.engine, dispatcher=dispatcher), dispatcher


@pytest.fixture(scope="module")
def stack(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tag = secrets.token_hex(4)
    with migrated_database(services.database_url) as url:
        env = {"AUTOEXEC_DATABASE_URL": url, **_queue_env(tag)}
        log_path = tmp_path_factory.mktemp("reconcile") / "worker.log"
        with environment(env) as engine:
            try:
                with worker_process(env, 2, log_path, f"reconcile-{tag}"):
                    yield Stack(engine, {**env, "AUTOEXEC_BROKER_URL": services.broker_url,
                                         "AUTOEXEC_REDIS_URL": services.redis_url})  # fmt: skip
            finally:
                _delete_queues(services.broker_url, env)


def submit(engine: Engine, definition: dict[str, Any], inputs: dict[str, Any]) -> Run:
    """Save and submit a graph with ``engine``; returns the run."""
    owner = f"user-{uuid.uuid4().hex[:8]}"
    graph_id, _ = api.save_graph(definition, owner, engine=engine)
    return Run(api.execute_graph(graph_id, owner, inputs, engine=engine), owner)


@dataclass(frozen=True)
class Run:
    id: str
    owner: str


def nodes(engine: Engine, run: Run) -> list[tuple[str, ExecutionStatus, bool]]:
    """(node id, status, noted as sent) of every node execution of the run, in creation order."""
    with engine.db.session() as session:
        return [(n.node_id, n.status, n.dispatched) for n in repo.node_executions(session, run.id)]


def assert_completed_once(engine: Engine, run: Run, outputs: dict[str, list[Any]]) -> None:
    """The run COMPLETED with exactly ``outputs``, every node having run exactly once."""
    view = api.wait(run.id, run.owner, timeout=TIMEOUT, engine=engine)
    assert view.status is S.COMPLETED, view.error
    assert view.outputs == outputs
    assert [(node_id, status) for node_id, status, _ in nodes(engine, run)] == [
        (node_id, S.COMPLETED) for node_id in ("x", "calc", "out")
    ]


def reconcile_command(stack: Stack, *args: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AUTOEXEC_")}
    env = {**clean, **stack.env, "AUTOEXEC_BLOCK_MODULES": ""}
    done = subprocess.run(
        [str(AUTOEXEC), "reconcile", *args],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def reconcile_task() -> dict[str, int]:
    result = tasks.reconcile.apply_async(kwargs={"older_than_seconds": 0})
    report: dict[str, int] = result.get(timeout=TIMEOUT)
    return report


@pytest.mark.parametrize("one_pass", ["command", "task"])
def test_a_run_whose_publish_was_lost_is_run_by_one_pass(stack: Stack, one_pass: str) -> None:
    lossy, dispatcher = stack.lossy()
    run = submit(lossy, ADD_ONE, {"x": 41})
    assert dropped(dispatcher) == [f"run_graph {run.id}"]
    assert nodes(stack.engine, run) == [("x", S.QUEUED, False)]

    if one_pass == "command":
        report = json.loads(reconcile_command(stack, "--older-than", "0", "--json"))
    else:
        report = reconcile_task()

    assert report == {**Report().as_dict(), "republished_runs": 1}
    assert_completed_once(stack.engine, run, {"sum": [42]})


def test_a_running_run_whose_successor_message_was_lost_completes_after_a_pass(
    stack: Stack,
) -> None:
    lossy, dispatcher = stack.lossy()
    run = submit(lossy, ADD_ONE, {"x": 1})
    # The run's first step and its start node run in this process; every message they send
    # is lost: the start node's, then its successor's (noted as sent when it was queued).
    assert admit(lossy, run.id)
    orchestrator.advance(lossy, run.id)
    [(start_id,)] = [(n.id,) for n in queued(stack.engine, run)]
    assert node_execution.execute_node(lossy, start_id) is S.COMPLETED
    assert any(sent.startswith("execute_node calc ") for sent in dropped(dispatcher))
    assert nodes(stack.engine, run) == [("x", S.COMPLETED, True), ("calc", S.QUEUED, True)]

    report = reconcile(stack.engine, older_than_seconds=0)

    assert report == Report(resent_nodes=1, woken_runs=1)
    assert_completed_once(stack.engine, run, {"sum": [2]})


def test_a_running_node_whose_task_is_gone_is_taken_over_by_a_pass(stack: Stack) -> None:
    """As a task that raised an error of the engine's (PostgreSQL refusing Infinity) left its
    node RUNNING with its message acknowledged (issue 22): no task marks the node alive, so a
    pass sends its task again, which the real worker takes over as a re-delivery."""
    lossy, _ = stack.lossy()
    run = submit(lossy, ADD_ONE, {"x": 1})
    assert admit(lossy, run.id)
    orchestrator.advance(lossy, run.id)
    [(start_id,)] = [(n.id,) for n in queued(stack.engine, run)]
    assert node_execution.execute_node(lossy, start_id) is S.COMPLETED
    [(calc_id,)] = [(n.id,) for n in queued(stack.engine, run)]
    with stack.engine.db.single_statement() as session:
        assert start_queued_node(session, calc_id) is not None  # claimed by a task now gone
    assert reconcile(stack.engine, older_than_seconds=300) == Report()  # not stale yet

    report = json.loads(reconcile_command(stack, "--older-than", "0", "--json"))

    assert report == {**Report().as_dict(), "lost_nodes_resent": 1}
    assert_completed_once(stack.engine, run, {"sum": [2]})
    with stack.engine.db.session() as session:
        (calc,) = [n for n in repo.node_executions(session, run.id) if n.id == calc_id]
        assert (calc.attempt, calc.worker_losses) == (2, 1)


def queued(engine: Engine, run: Run) -> list[NodeExecution]:
    with engine.db.session() as session:
        found = [n for n in repo.node_executions(session, run.id) if n.status is S.QUEUED]
        session.expunge_all()
        return found


@pytest.mark.parametrize(
    ("ended", "reason"),
    [
        # As admission ends a run whose parent was terminated, leaving its start nodes.
        (S.TERMINATED, "its parent execution was terminated"),
        # As a failed publish ended a run before the submission ended its nodes too.
        (S.FAILED, "could not publish the run message"),
    ],
)
def test_queued_nodes_of_an_ended_run_end_terminated(
    stack: Stack, ended: ExecutionStatus, reason: str
) -> None:
    lossy, _ = stack.lossy()
    run = submit(lossy, ADD_ONE, {"x": 1})
    with stack.engine.db.session() as session:
        assert transition_graph(session, run.id, ended, error=reason)

    report = reconcile(stack.engine, older_than_seconds=300)

    assert report == Report(terminated_nodes=1)
    assert nodes(stack.engine, run) == [("x", S.TERMINATED, False)]
    with stack.engine.db.session() as session:
        assert [n.error for n in repo.node_executions(session, run.id)] == [ENDED_WITH_NODES_LEFT]
        assert repo.status_of(session, run.id) is ended
    assert reconcile(stack.engine, older_than_seconds=0) == Report()


def test_a_healthy_running_run_is_left_alone(stack: Stack) -> None:
    run = submit(stack.engine, WAIT, {"s": 6})
    wait_until_running(stack.engine, run, "wait")

    assert reconcile(stack.engine, older_than_seconds=300) == Report()
    # Even with no age at all, a run whose only active node is RUNNING is its node's to finish:
    # nothing is sent again, no step is woken.
    assert reconcile(stack.engine, older_than_seconds=0) == Report(owned_runs=1)
    assert reconcile_command(stack).splitlines() == Report().lines()

    view = api.wait(run.id, run.owner, timeout=TIMEOUT, engine=stack.engine)
    assert view.status is S.COMPLETED
    assert view.outputs == {"result": ["done"]}
    assert [status for _, status, _ in nodes(stack.engine, run)] == [S.COMPLETED] * 3


def wait_until_running(engine: Engine, run: Run, node_id: str) -> None:
    def running() -> bool:
        return any(n == node_id and status is S.RUNNING for n, status, _ in nodes(engine, run))

    wait_until(running, f"{node_id} running", TIMEOUT)


def test_celery_beat_schedules_the_passes_that_resume_a_lost_run(
    stack: Stack, tmp_path: Path
) -> None:
    lossy, _ = stack.lossy()
    run = submit(lossy, ADD_ONE, {"x": 6})
    env = {
        **os.environ,
        **stack.env,
        "AUTOEXEC_RECONCILE_INTERVAL_SECONDS": "0.5",
        "AUTOEXEC_RECONCILE_AFTER_SECONDS": "0",
    }
    with celery_beat(env, tmp_path):
        assert_completed_once(stack.engine, run, {"sum": [7]})


@contextmanager
def celery_beat(env: dict[str, str], directory: Path) -> Iterator[None]:
    """``celery -A autoexec beat`` as an operator starts it (schedule file in ``directory``)."""
    command = [sys.executable, "-m", "celery", "-A", "autoexec", "beat", "-l", "info",
               "-s", str(directory / "schedule")]  # fmt: skip
    with (directory / "beat.log").open("ab") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        yield
    finally:
        process.terminate()
        process.wait(timeout=TIMEOUT)


def test_a_child_run_that_outlived_its_ended_parent_is_cancelled_by_a_pass(stack: Stack) -> None:
    owner = f"user-{uuid.uuid4().hex[:8]}"
    child_graph, _ = api.save_graph(WAIT, owner, engine=stack.engine)
    parent_graph = {
        "name": "parent",
        "nodes": [
            {"id": "child", "block_id": "agent_executor",
             "input_default": {"graph_id": child_graph, "inputs": {"s": 300}}},
        ],
        "links": [],
    }  # fmt: skip
    graph_id, _ = api.save_graph(parent_graph, owner, engine=stack.engine)
    parent = Run(api.execute_graph(graph_id, owner, {}, engine=stack.engine), owner)
    child = Run(wait_for_child(stack.engine, parent), owner)
    wait_until_running(stack.engine, child, "wait")
    # The process that ended the parent died before stopping its children: the parent's end
    # (and its waiting node's) was committed, nothing more.
    with stack.engine.db.session() as session:
        assert transition_graph(session, parent.id, S.TERMINATED, error="cancelled")
        terminate_nodes(session, parent.id, frozenset({S.WAITING}))

    assert reconcile(stack.engine, older_than_seconds=300) == Report(cancelled_orphans=1)

    assert api.wait(child.id, owner, timeout=TIMEOUT, engine=stack.engine).status is S.TERMINATED
    # The running node finds the stop at its next watch and ends TERMINATED too.
    ended = [("s", S.COMPLETED), ("wait", S.TERMINATED)]
    deadline = time.monotonic() + TIMEOUT
    while [(n, status) for n, status, _ in nodes(stack.engine, child)] != ended:
        assert time.monotonic() < deadline, nodes(stack.engine, child)
        time.sleep(0.05)
    assert reconcile(stack.engine, older_than_seconds=0).cancelled_orphans == 0


def wait_for_child(engine: Engine, parent: Run) -> str:
    def child() -> str | None:
        with engine.db.session() as session:
            return session.scalar(
                select(GraphExecution.id).where(GraphExecution.parent_execution_id == parent.id)
            )

    return str(wait_until(child, f"a child of graph execution {parent.id}", TIMEOUT))
