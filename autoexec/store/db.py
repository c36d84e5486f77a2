"""Database engines and sessions. A runtime (``autoexec.runtime``) owns one ``Database`` per
process: a forked child builds its own."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from autoexec.hooks import EngineHook, session_info


class Database:
    """An engine and its session factory for one database URL; a commit of its sessions calls
    ``hooks`` (``autoexec.hooks``)."""

    def __init__(self, url: str, hooks: Sequence[EngineHook] = ()) -> None:
        self.url = url
        self.engine = make_engine(url)
        info = session_info(hooks)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False, info=info)
        self._single_statements = self._sessions
        self.autocommit_engine: Engine | None = None
        if not is_sqlite(url):
            # Its own small pool: switching a pooled connection to autocommit and back costs
            # more than the round trips it saves.
            self.autocommit_engine = make_engine(url, isolation_level="AUTOCOMMIT", pool_size=2)
            self._single_statements = sessionmaker(
                self.autocommit_engine, expire_on_commit=False, info=info
            )

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        with self._sessions.begin() as session:
            yield session

    @contextmanager
    def single_statement(self) -> Iterator[Session]:
        """A session for one statement that is atomic by itself: on PostgreSQL it runs in
        autocommit, with no BEGIN and COMMIT round trips; hooks see it as committed like any
        session's transaction. (On SQLite it is a transaction like ``session``'s.)"""
        with self._single_statements.begin() as session:
            yield session

    @contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A read-only session whose statements all see the same moment of the database.

        On PostgreSQL the transaction is REPEATABLE READ; on SQLite (WAL mode) one transaction
        already reads from one snapshot.
        """
        with self._sessions.begin() as session:
            if not is_sqlite(self.url):
                session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
        if self.autocommit_engine is not None:
            self.autocommit_engine.dispose()


def is_sqlite(url: str | URL) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(url: str, **options: Any) -> Engine:
    if is_sqlite(url):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    options = {"pool_recycle": RECYCLE_SECONDS, "pool_size": 5, "max_overflow": 10, **options}
    engine = create_engine(url, **options)
    event.listen(engine, "checkin", _note_checkin)
    event.listen(engine, "checkout", _ping_if_idle)
    return engine


# A connection is pinged on checkout only after it sat idle this long (a busy worker checks
# out thousands a second, and a ping each is a round trip each); one dropped while in use
# fails its transaction with OperationalError, which the tasks retry.
IDLE_PING_SECONDS = 10.0
RECYCLE_SECONDS = 1800


def _note_checkin(_dbapi_connection: Any, record: Any) -> None:
    if record is not None:
        record.info["checked_in"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    idle_since = record.info.get("checked_in")
    if idle_since is None or time.monotonic() - idle_since < IDLE_PING_SECONDS:
        return
    try:
        cursor = dbapi_connection.cursor()
        cursor.execute("SELECT 1")
        cursor.close()
        dbapi_connection.rollback()  # so the next transaction can still set its isolation
    except Exception as exc:
        # The pool discards this connection and checks out another.
        raise DisconnectionError() from exc


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the driver, open transactions, so BEGIN IMMEDIATE below applies.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin_immediate(connection: Any) -> None:
    # Writers take the lock at BEGIN, so two writers queue instead of failing to upgrade.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _admin_engine(url: URL) -> Engine:
    """An autocommit engine on the server's maintenance database (``postgres``)."""
    return create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")


def ensure_database_exists(url: str) -> bool:
    """Create the PostgreSQL database named in ``url`` if it is missing; True if created."""
    parsed = make_url(url)
    if is_sqlite(parsed) or not parsed.database:
        return False
    admin = _admin_engine(parsed)
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": parsed.database}
            ).scalar()
            if exists:
                return False
            quoted = admin.dialect.identifier_preparer.quote(parsed.database)
            conn.execute(text(f"CREATE DATABASE {quoted}"))
            return True
    finally:
        admin.dispose()


def drop_database(url: str) -> None:
    """Drop the PostgreSQL database named in ``url`` if it exists, disconnecting its clients."""
    parsed = make_url(url)
    if is_sqlite(parsed) or not parsed.database:
        return
    admin = _admin_engine(parsed)
    try:
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": parsed.database},
            )
            quoted = admin.dialect.identifier_preparer.quote(parsed.database)
            conn.execute(text(f"DROP DATABASE IF EXISTS {quoted}"))
    finally:
        admin.dispose()
