"""A runtime builds a process's database, coordinator and hooks from its settings; commits of
its database call its hooks; a forked child gets a runtime of its own; configuring the Celery
app's runtime leaves the environment alone."""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from autoexec.billing.notifications import NotificationHook, NotificationRequest
from autoexec.celery_app import app
from autoexec.hooks import GraphExecutionChange, Hook, note
from autoexec.observability.events import EventPublisher
from autoexec.observability.metrics import MetricsHook
from autoexec.runtime import Runtime
from autoexec.settings import load_settings
from autoexec.statuses import ExecutionStatus

S = ExecutionStatus


def no_send(
    request: NotificationRequest,
    sink: str | None = None,
    attempt: int = 0,
    countdown: float | None = None,
) -> None:
    raise AssertionError("no notification expected")


def runtime_on(sqlite_url: str, **settings: Any) -> Runtime:
    redis_url = f"memory://runtime-{uuid.uuid4().hex}"
    loaded = load_settings(database_url=sqlite_url, redis_url=redis_url, **settings)
    return Runtime(loaded, send_notification=no_send)


class Recorder(Hook):
    def __init__(self) -> None:
        self.queued: list[str] = []

    def execution_queued(self, change: GraphExecutionChange) -> None:
        self.queued.append(change.graph_exec_id)


def test_the_hooks_are_the_built_in_ones_then_those_the_settings_name(sqlite_url: str) -> None:
    runtime = runtime_on(sqlite_url, hooks="autoexec.observability.metrics:MetricsHook")
    kinds = [type(hook) for hook in runtime.hooks]
    assert kinds == [EventPublisher, MetricsHook, NotificationHook, MetricsHook]


def test_a_commit_calls_the_hooks_of_the_runtime_whose_database_it_was(
    sqlite_url: str,
) -> None:
    mine, other = runtime_on(sqlite_url), runtime_on(sqlite_url)
    recorder = Recorder()
    mine.hooks.append(recorder)
    with other.database.session() as session:
        other_id = _queued_execution(session)
    with mine.database.session() as session:
        my_id = _queued_execution(session)
    assert recorder.queued == [my_id]
    assert other_id not in recorder.queued
    assert mine.flush_events(timeout=10)


def _queued_execution(session: Session) -> str:
    """What the store notes when it creates an execution (in a transaction that ran SQL)."""
    graph_exec_id = uuid.uuid4().hex
    session.execute(text("SELECT 1"))
    note(session, GraphExecutionChange(graph_exec_id, "ada", "g", 1, S.QUEUED))
    return graph_exec_id


def test_a_forked_child_gets_its_own_runtime_with_fresh_connections(sqlite_url: str) -> None:
    runtime = runtime_on(sqlite_url)
    assert runtime.for_this_process() is runtime
    parent_parts = (id(runtime.database), id(runtime.coordinator))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's handlers
        child = runtime.for_this_process()
        fresh = child is not runtime and (id(child.database), id(child.coordinator)) != (
            parent_parts
        )
        os.write(write, b"fresh" if fresh and child.settings == runtime.settings else b"shared")
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.read(read, 16) == b"fresh"
    assert status == 0


def test_configuring_the_app_sets_its_runtime_and_leaves_the_environment_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AUTOEXEC_NODE_QUEUE", raising=False)
    before, previous = dict(os.environ), app.configured_env
    try:
        runtime = app.configure({"AUTOEXEC_NODE_QUEUE": "runtime-test.nodes"})
        assert app.runtime is runtime
        assert runtime.settings.node_queue == "runtime-test.nodes"
        assert app.conf.task_routes["autoexec.execute_node"] == {"queue": "runtime-test.nodes"}
        assert dict(os.environ) == before
    finally:
        restored = app.configure(previous, replace=True)
    assert restored.settings.node_queue == "autoexec.nodes"
