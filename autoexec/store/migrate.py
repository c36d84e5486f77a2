"""Schema migrations: bring a database to the latest Alembic revision (``autoexec db upgrade``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from autoexec.store.db import ensure_database_exists

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic config for ``url`` built in code (no ``alembic.ini`` needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolates "%": a password such as "p%40ss" must reach Alembic unchanged.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_database(url: str | None = None) -> None:
    """Create the database if it is missing, then migrate it to the latest revision.

    ``url`` defaults to ``AUTOEXEC_DATABASE_URL``. Running it on an up-to-date database does
    nothing.
    """
    if url is None:
        from autoexec.settings import get_settings

        url = get_settings().database_url
    ensure_database_exists(url)
    command.upgrade(alembic_config(url), "head")


def head_revision() -> str:
    """The newest migration shipped with this package."""
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None, "the package ships no migration"
    return head
