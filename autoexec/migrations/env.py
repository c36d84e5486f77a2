"""Alembic environment: migrates the autoexec schema on PostgreSQL or SQLite.

The URL is the caller's ``sqlalchemy.url`` when set (``autoexec.store.migrate`` sets it), else
``AUTOEXEC_DATABASE_URL``. A caller may also pass an open connection as
``config.attributes["connection"]``.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from autoexec.store.db import is_sqlite, make_engine
from autoexec.store.tables import Base

config = context.config
target_metadata = Base.metadata


def database_url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from autoexec.settings import get_settings

    return get_settings().database_url


def configure(connection: Connection | None = None, url: str | None = None) -> None:
    backend_url = connection.engine.url if connection is not None else url
    assert backend_url is not None
    context.configure(
        connection=connection,
        url=url,
        target_metadata=target_metadata,
        render_as_batch=is_sqlite(backend_url),
        compare_type=True,
        literal_binds=connection is None,
    )


def run_migrations_offline() -> None:
    configure(url=database_url())
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online(connection: Connection) -> None:
    configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    if context.is_offline_mode():
        run_migrations_offline()
        return
    given = config.attributes.get("connection")
    if given is not None:
        run_migrations_online(given)
        return
    engine = make_engine(database_url())
    try:
        with engine.connect() as connection:
            run_migrations_online(connection)
    finally:
        engine.dispose()


main()
