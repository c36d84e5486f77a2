"""Fixtures shared by every test tier.

- ``services``: PostgreSQL, Redis and RabbitMQ answer (else skip; a failure when ``CI=true``).
- ``pg_url``: a fresh, migrated PostgreSQL database for the session, dropped at the end.
- ``new_pg_url``: the URL of a PostgreSQL database that does not exist yet (dropped after).
- ``db``: an :class:`autoexec.store.db.Database` on ``pg_url``, emptied after each test.
- ``sqlite_url``: a migrated SQLite file database in ``tmp_path``.

Tests under ``tests/integration`` and ``tests/faults`` are marked ``integration``
automatically (they need the services).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from kombu import Connection
from sqlalchemy import create_engine, make_url, text

from autoexec.settings import Settings, load_settings
from autoexec.store.db import Database, drop_database, ensure_database_exists
from autoexec.store.migrate import upgrade_database
from autoexec.store.tables import Base

INTEGRATION_DIR = Path(__file__).parent / "integration"
FAULTS_DIR = Path(__file__).parent / "faults"
CONNECT_TIMEOUT_SECONDS = 3


@dataclass(frozen=True)
class Services:
    """Where the real services are (from the ``AUTOEXEC_*`` environment)."""

    database_url: str
    redis_url: str
    broker_url: str


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(INTEGRATION_DIR) or item.path.is_relative_to(FAULTS_DIR):
            item.add_marker(pytest.mark.integration)


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def require(name: str, url: str, check: Callable[[str], object]) -> None:
    """Skip (locally) or fail (in CI) unless the service at ``url`` answers."""
    try:
        check(url)
    except Exception as exc:
        message = f"{name} is not reachable at {make_url(url)!r}: {exc}"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def admin_url(url: str) -> str:
    """The maintenance database (``postgres``) on the server of ``url``."""
    return make_url(url).set(database="postgres").render_as_string(hide_password=False)


def ping_postgres(url: str) -> None:
    engine = create_engine(
        admin_url(url), connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    )
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    finally:
        engine.dispose()


def ping_redis(url: str) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_SECONDS)
    try:
        client.ping()
    finally:
        client.close()


def ping_rabbitmq(url: str) -> None:
    with Connection(url, connect_timeout=CONNECT_TIMEOUT_SECONDS) as conn:
        conn.ensure_connection(max_retries=1)


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Settings from the environment (not the process-wide cached ones)."""
    return load_settings()


@pytest.fixture(scope="session")
def postgres_server(settings: Settings) -> str:
    """The configured PostgreSQL URL, once the server answers."""
    require("PostgreSQL", settings.database_url, ping_postgres)
    return settings.database_url


@pytest.fixture(scope="session")
def services(settings: Settings, postgres_server: str) -> Services:
    """PostgreSQL, Redis and RabbitMQ all answer."""
    require("Redis", settings.redis_url, ping_redis)
    require("RabbitMQ", settings.broker_url, ping_rabbitmq)
    return Services(
        database_url=postgres_server,
        redis_url=settings.redis_url,
        broker_url=settings.broker_url,
    )


def random_database_url(server_url: str) -> str:
    name = f"autoexec_test_{secrets.token_hex(6)}"
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


@contextmanager
def migrated_database(server_url: str) -> Iterator[str]:
    """A new database ``autoexec_test_<random>`` on that server, migrated; dropped after."""
    url = random_database_url(server_url)
    ensure_database_exists(url)
    try:
        upgrade_database(url)
        yield url
    finally:
        drop_database(url)


@pytest.fixture(scope="session")
def pg_url(postgres_server: str) -> Iterator[str]:
    """A new PostgreSQL database ``autoexec_test_<random>``, migrated to head."""
    with migrated_database(postgres_server) as url:
        yield url


@pytest.fixture
def new_pg_url(postgres_server: str) -> Iterator[str]:
    """The URL of a PostgreSQL database that does not exist yet; dropped after the test."""
    url = random_database_url(postgres_server)
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture(scope="session")
def pg_database(pg_url: str) -> Iterator[Database]:
    database = Database(pg_url)
    yield database
    database.dispose()


@pytest.fixture
def db(pg_database: Database) -> Iterator[Database]:
    """The session's PostgreSQL :class:`Database`; every table is emptied after the test."""
    yield pg_database
    truncate_all(pg_database)


def truncate_all(database: Database) -> None:
    preparer = database.engine.dialect.identifier_preparer
    tables = ", ".join(preparer.quote(table.name) for table in Base.metadata.sorted_tables)
    with database.engine.begin() as conn:
        conn.execute(text("SET LOCAL lock_timeout = '10s'"))
        conn.execute(text(f"TRUNCATE TABLE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite database in a file under ``tmp_path``."""
    url = f"sqlite:///{tmp_path / 'autoexec.sqlite3'}"
    upgrade_database(url)
    return url
