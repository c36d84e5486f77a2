"""Credits for callers (SPEC §6): top-ups, balances and the ledger's history."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from autoexec.errors import InputValidationError
from autoexec.store import credits as ledger
from autoexec.store.credits import TOP_UP, Entry
from autoexec.store.db import Database
from autoexec.store.graphs import ensure_user

MAX_KEY_CHARS = 60  # the ledger key column holds 200, with the user id (up to 128) in it


class CreditTransactionView(BaseModel):
    """One row of a user's ledger: ``amount`` is signed (a charge is negative)."""

    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: int
    kind: str
    amount: int
    balance_after: int
    reason: str
    details: dict[str, Any]
    graph_exec_id: str | None
    node_exec_id: int | None
    created_at: datetime


class Engine(Protocol):
    """What the ledger needs of an engine: its database."""

    @property
    def db(self) -> Database: ...


def top_up(engine: Engine, user_id: str, amount: int, key: str | None = None) -> int:
    """Add ``amount`` credits; the new balance. With ``key`` the top-up happens once: a
    repeat with the same key changes nothing and returns the balance."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InputValidationError(
            f"a top-up must be a whole number of credits above 0, got {amount!r}"
        )
    if key is not None and not 0 < len(key) <= MAX_KEY_CHARS:
        raise InputValidationError(f"a top-up key must have 1 to {MAX_KEY_CHARS} characters")
    with engine.db.session() as session:
        ensure_user(session, user_id)
        account = ledger.lock_account(session, user_id)
        ledger_key = f"top-up:{user_id}:{key or uuid.uuid4()}"  # one user's key is not another's
        entry = Entry(user_id, TOP_UP, amount, ledger_key, reason="top-up")
        after = ledger.apply(session, account, entry)
        return account.balance if after is None else after


def balance(engine: Engine, user_id: str) -> int:
    with engine.db.session() as session:
        return ledger.balance_of(session, user_id)


def history(engine: Engine, user_id: str, limit: int = 20) -> list[CreditTransactionView]:
    """The user's ledger, newest first."""
    if limit < 1:
        raise InputValidationError(f"limit must be at least 1, not {limit}")
    with engine.db.session() as session:
        rows = ledger.transactions(session, user_id, limit)
        return [CreditTransactionView.model_validate(row) for row in rows]
