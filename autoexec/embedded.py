"""The embedded stack: the whole engine in one process, with no services.

SQLite file for the store, Celery's in-memory broker with a worker thread, and an in-process
Redis stand-in. The engine runs the same code paths as on a cluster.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

EMBEDDED_ENV = {
    "AUTOEXEC_BROKER_URL": "autoexec-memory://localhost/",
    "AUTOEXEC_REDIS_URL": "memory://embedded",
    "AUTOEXEC_RESULT_BACKEND": "cache+memory://",
}


def default_home() -> Path:
    return Path(os.environ.get("AUTOEXEC_HOME", Path.home() / ".autoexec"))


def configure_embedded(home: Path | None = None) -> None:
    """Point this process's settings at the embedded stack (before anything reads them) and
    bring its SQLite database in ``home`` to the latest schema."""
    home = (home or default_home()).resolve()
    home.mkdir(parents=True, exist_ok=True)
    from autoexec.tasks import reconfigure

    database = f"sqlite:///{home / 'embedded.sqlite3'}"
    reconfigure({**EMBEDDED_ENV, "AUTOEXEC_DATABASE_URL": database})
    migrate_once(database)


@functools.cache
def migrate_once(database_url: str) -> None:
    """Migrate the embedded database the first time this process configures it."""
    from autoexec.store.migrate import upgrade_database

    upgrade_database(database_url)


@contextmanager
def embedded_worker() -> Iterator[None]:
    """Run a Celery worker thread on the in-memory broker (after ``configure_embedded``).

    The worker thread is a daemon: it stops with the process, so leaving the block costs nothing
    (every execution the caller waited for has already ended).
    """
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
    yield


def end_node_executions(graph_exec_id: str, reason: str = "cancelled") -> None:
    """Mark TERMINATED what still runs of a cancelled execution: on the embedded stack it runs in
    this process, which is about to exit (a cluster's workers stop such nodes themselves)."""
    from autoexec.statuses import ExecutionStatus as S
    from autoexec.store.transitions import terminate_nodes
    from autoexec.tasks import get_engine

    with get_engine().db.session() as session:
        terminate_nodes(session, graph_exec_id, frozenset({S.QUEUED, S.RUNNING}), error=reason)
