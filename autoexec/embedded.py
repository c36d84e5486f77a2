"""The embedded stack: the whole engine in one process, with no services.

SQLite file for the store, Celery's in-memory broker with a worker thread, and an in-process
Redis stand-in. The engine runs the same code paths as on a cluster.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from autoexec.errors import ConfigurationError
from autoexec.local_engine import LocalEngineServer

log = logging.getLogger(__name__)

TAKE_UP_LIMIT = 1000  # runs an engine takes up when it starts

EMBEDDED_ENV = {
    "AUTOEXEC_BROKER_URL": "autoexec-memory://localhost/",
    "AUTOEXEC_REDIS_URL": "memory://embedded",
    "AUTOEXEC_RESULT_BACKEND": "cache+memory://",
}


def default_home() -> Path:
    return Path(os.environ.get("AUTOEXEC_HOME", Path.home() / ".autoexec"))


def configure_embedded(home: Path | None = None) -> Path:
    """Point this process's settings at the embedded stack (before anything reads them) and
    bring its SQLite database in ``home`` to the latest schema; the home."""
    home = (home or default_home()).resolve()
    home.mkdir(parents=True, exist_ok=True)
    from autoexec.tasks import reconfigure

    database = f"sqlite:///{home / 'embedded.sqlite3'}"
    reconfigure({**EMBEDDED_ENV, "AUTOEXEC_DATABASE_URL": database})
    migrate_once(database)
    return home


@functools.cache
def migrate_once(database_url: str) -> None:
    """Migrate the embedded database the first time this process configures it."""
    from autoexec.store.migrate import upgrade_database

    upgrade_database(database_url)


@contextmanager
def embedded_engine(home: Path) -> Iterator[LocalEngineServer | None]:
    """Run the engine of ``home`` in this process (after ``configure_embedded``): a Celery worker
    thread on the in-process broker, served to the home's other processes. Runs left behind by
    an engine that stopped are taken up. Yields the server, or None (and runs nothing) if
    another process serves the home already.

    The worker thread is a daemon: it stops with the process.
    """
    server = LocalEngineServer(home, _api_function)
    if not server.start():
        yield None
        return
    try:
        _start_worker()
        threading.Thread(target=_take_up_runs, name="autoexec-take-up", daemon=True).start()
        yield server
    finally:
        server.close()


@contextmanager
def embedded_worker(home: Path | None = None) -> Iterator[None]:
    """Run the embedded engine of ``home`` (default ``$AUTOEXEC_HOME``) in this process while
    the block lasts, for ``autoexec.api`` calls made here (after ``configure_embedded``).
    ``ConfigurationError`` if another process runs that engine (an ``autoexec run`` or
    ``autoexec serve``): one engine per home."""
    home = (home or default_home()).resolve()
    with embedded_engine(home) as server:
        if server is None:
            raise ConfigurationError(
                f"another process runs the engine of {home} (autoexec run or serve): stop it, "
                "or use another AUTOEXEC_HOME"
            )
        yield


def _api_function(name: str) -> Callable[..., Any]:
    from autoexec import api

    function: Callable[..., Any] = getattr(api, name)
    return function


def _start_worker() -> None:
    from autoexec.celery_app import app

    worker = app.WorkController(
        pool_cls="solo",
        concurrency=1,
        loglevel="WARNING",
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
    )
    # Celery finds "the current app" per thread: without this, what the worker thread builds from
    # a bare signature (a task's retry, a chord) goes to Celery's default app, on amqp://localhost.
    app.set_default()

    def serve() -> None:
        app.set_current()
        worker.start()

    threading.Thread(target=serve, name="autoexec-embedded-worker", daemon=True).start()


def _take_up_runs() -> None:
    """Resume what an engine of this home left when it stopped (its broker went with it): this
    process holds the home's engine lock, so no other process is running them. What suspended
    nodes wait for is sent again too (a fan-out's element tasks were in the lost broker)."""
    from autoexec.clock import utcnow
    from autoexec.engine.reconciler import reconcile
    from autoexec.engine.suspensions.registry import KINDS
    from autoexec.statuses import ExecutionStatus
    from autoexec.store import executions, suspended
    from autoexec.tasks import get_engine

    engine = get_engine()
    try:
        report = reconcile(engine, older_than_seconds=0)
        with engine.db.session() as session:
            runs = [
                run
                for status in (ExecutionStatus.RUNNING, ExecutionStatus.WAITING)
                for run in executions.stale_runs(session, status, utcnow(), TAKE_UP_LIMIT)
            ]
            waiting = [n for run in runs for n in suspended.suspended_nodes(session, run)]
        for node_exec_id in waiting:
            KINDS.send_again(engine, node_exec_id)
    except Exception:
        log.exception("could not take up the runs left by an earlier engine of this home")
        return
    if report.acted or waiting:
        log.info("took up runs left by an earlier engine of this home: %s", report)


def wait_for_served_runs(server: LocalEngineServer, timeout: float = 3600.0) -> None:
    """Keep the engine running until the runs other processes started here have ended."""
    from autoexec import api

    for graph_exec_id, user_id in sorted(server.served_runs().items()):
        with contextlib.suppress(TimeoutError):
            api.wait(graph_exec_id, user_id, timeout=timeout)


def end_node_executions(graph_exec_id: str, reason: str = "cancelled") -> None:
    """Mark TERMINATED what still runs of a cancelled execution: on the embedded stack it runs in
    this process, which is about to exit (a cluster's workers stop such nodes themselves)."""
    from autoexec.statuses import ExecutionStatus as S
    from autoexec.store.transitions import terminate_nodes
    from autoexec.tasks import get_engine

    with get_engine().db.session() as session:
        terminate_nodes(session, graph_exec_id, frozenset({S.QUEUED, S.RUNNING}), error=reason)
