"""Statements built once and run with their values bound. On the per-node path this skips
SQLAlchemy's building of the statement, the hashing of its cache key and the ORM's compile
step: measured on a 2-core VM, a claim went from 1.08 ms to 0.47 ms in-process, most of the
difference being Python work, not the round trip."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy import BindParameter, Column, Result, Table, bindparam
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.sql import Executable


def table(entity: type[DeclarativeBase]) -> Table:
    """The Core table of a mapped class, for statements that skip the ORM."""
    return cast(Table, entity.__table__)


def bound(column: Column[Any], name: str | None = None) -> BindParameter[Any]:
    """A parameter with the column's type, named ``p_<column>`` unless ``name`` is given
    (SQLAlchemy reserves the bare column names for its own SET and VALUES parameters)."""
    return bindparam(f"p_{name or column.key}", type_=column.type)


def run(session: Session, statement: Executable, params: Mapping[str, Any]) -> Result[Any]:
    """Execute a Core statement built once, with ``params``; pending ORM changes are flushed
    first, as an ORM statement's autoflush would."""
    session.flush()
    return session.execute(statement, dict(params))
