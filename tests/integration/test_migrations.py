"""The Alembic migrations build exactly the schema of ``autoexec.store.tables``."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, make_url, text

from autoexec.store.migrate import head_revision, upgrade_database
from autoexec.store.tables import Base


def schema_diff(url: str) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def database_exists(url: str) -> bool:
    parsed = make_url(url)
    name = parsed.database
    engine = create_engine(parsed.set(database="postgres"))
    try:
        with engine.connect() as conn:
            found = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).scalar()
            return found is not None
    finally:
        engine.dispose()


def test_postgresql_schema_matches_models(pg_url: str) -> None:
    assert schema_diff(pg_url) == []
    assert current_revision(pg_url) == head_revision()


def test_sqlite_schema_matches_models(sqlite_url: str) -> None:
    assert schema_diff(sqlite_url) == []
    assert current_revision(sqlite_url) == head_revision()


def test_upgrade_creates_a_missing_database_and_is_idempotent(new_pg_url: str) -> None:
    assert not database_exists(new_pg_url)

    upgrade_database(new_pg_url)
    assert database_exists(new_pg_url)
    assert current_revision(new_pg_url) == head_revision()

    upgrade_database(new_pg_url)
    assert current_revision(new_pg_url) == head_revision()
    assert schema_diff(new_pg_url) == []


def test_upgrade_twice_on_sqlite_is_a_no_op(sqlite_url: str) -> None:
    upgrade_database(sqlite_url)
    assert current_revision(sqlite_url) == head_revision()
    assert schema_diff(sqlite_url) == []
