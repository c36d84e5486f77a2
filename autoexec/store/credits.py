"""The credit ledger (SPEC §6): one row per change of a user's balance, each applied once
(its unique key), and the running balance per user, changed in the same transaction.

Every change locks the user's balance row first, so concurrent charges of one user (from
different runs) queue on it and the balance never goes below zero through a charge.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import String, cast, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from autoexec.hooks import BalanceChange, note
from autoexec.statuses import ExecutionStatus
from autoexec.store.tables import (
    CreditBalance,
    CreditTransaction,
    GraphExecution,
    NodeExecution,
    utcnow,
)

TOP_UP = "TOP_UP"
CHARGE = "CHARGE"
REFUND = "REFUND"
ADJUSTMENT = "ADJUSTMENT"


@dataclass(frozen=True)
class Account:
    """A user's balance as locked by a change; ``top_ups`` counts their top-ups."""

    balance: int
    top_ups: int


@dataclass(frozen=True)
class Entry:
    """A ledger row to write: ``amount`` is signed (a charge is negative)."""

    user_id: str
    kind: str
    amount: int
    key: str
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    graph_id: str | None = None
    graph_exec_id: str | None = None
    node_exec_id: int | None = None


@dataclass(frozen=True)
class NodeCharge:
    """Which node execution a charge is for."""

    node_exec_id: int
    node_id: str
    block_id: str
    inputs: Mapping[str, Any]
    fan_out: str | None = None  # the input pin a fan-out node runs its block over


class Refused(Exception):
    """A charge was refused; ``error`` is what the node fails with."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def _insert(session: Session) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def lock_account(session: Session, user_id: str) -> Account:
    """The user's balance, its row locked until the transaction ends (created at 0)."""
    row = session.execute(_locked(user_id)).first()
    if row is None:
        stmt = _insert(session)(CreditBalance).values(
            user_id=user_id, balance=0, top_ups=0, updated_at=utcnow()
        )
        session.execute(stmt.on_conflict_do_nothing(index_elements=["user_id"]))
        row = session.execute(_locked(user_id)).one()
    return Account(int(row.balance), int(row.top_ups))


def _locked(user_id: str) -> Any:
    return (
        select(CreditBalance.balance, CreditBalance.top_ups)
        .where(CreditBalance.user_id == user_id)
        .with_for_update()
    )


def balance_of(session: Session, user_id: str) -> int:
    found = session.scalar(select(CreditBalance.balance).where(CreditBalance.user_id == user_id))
    return int(found or 0)


def already_applied(session: Session, key: str) -> bool:
    return (
        session.scalar(select(CreditTransaction.id).where(CreditTransaction.key == key)) is not None
    )


def apply(session: Session, account: Account, entry: Entry) -> int | None:
    """Write ``entry`` and move the balance (locked in ``account``) by its amount, unless an
    entry with its key was written before; the new balance, or None if it was a repeat."""
    after = account.balance + entry.amount
    stmt = (
        _insert(session)(CreditTransaction)
        .values(
            user_id=entry.user_id,
            kind=entry.kind,
            amount=entry.amount,
            balance_after=after,
            reason=entry.reason,
            details=entry.details,
            key=entry.key,
            graph_exec_id=entry.graph_exec_id,
            node_exec_id=entry.node_exec_id,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(CreditTransaction.id)
    )
    transaction_id = session.execute(stmt).scalar()
    if transaction_id is None:
        return None
    counted = {"top_ups": CreditBalance.top_ups + 1} if entry.kind == TOP_UP else {}
    session.execute(
        update(CreditBalance)
        .where(CreditBalance.user_id == entry.user_id)
        .values(balance=after, updated_at=utcnow(), **counted)
    )
    note(
        session,
        BalanceChange(
            user_id=entry.user_id,
            kind=entry.kind,
            amount=entry.amount,
            balance_before=account.balance,
            balance_after=after,
            transaction_id=int(transaction_id),
            graph_id=entry.graph_id,
            graph_exec_id=entry.graph_exec_id,
            node_exec_id=entry.node_exec_id,
        ),
    )
    return after


def unstarted_charges(session: Session, graph_exec_id: str) -> list[tuple[int, str, int]]:
    """(node execution id, node id, amount) of each dispatch charge of the run whose node
    execution never started: still QUEUED (the caller is ending the run), or TERMINATED."""
    stmt = (
        select(NodeExecution.id, NodeExecution.node_id, -CreditTransaction.amount)
        .join(NodeExecution, NodeExecution.id == CreditTransaction.node_exec_id)
        .where(
            CreditTransaction.graph_exec_id == graph_exec_id,
            CreditTransaction.key == "node:" + cast(NodeExecution.id, String) + ":dispatch",
            NodeExecution.status.in_((ExecutionStatus.QUEUED, ExecutionStatus.TERMINATED)),
            NodeExecution.started_at.is_(None),
        )
        .order_by(NodeExecution.id)
        # A claim waits, then finds the node ended: nothing refunded ever starts.
        .with_for_update(of=NodeExecution)
    )
    return [(int(row[0]), str(row[1]), int(row[2])) for row in session.execute(stmt)]


def transactions(session: Session, user_id: str, limit: int) -> list[CreditTransaction]:
    """The user's ledger, newest first."""
    stmt = (
        select(CreditTransaction)
        .where(CreditTransaction.user_id == user_id)
        .order_by(CreditTransaction.id.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))


# --- a run's budget and spend ---------------------------------------------------------------


@dataclass
class RunAccount:
    """A graph execution's credit state, read under its row lock (held by the caller)."""

    graph_exec_id: str
    user_id: str
    graph_id: str
    budget: int | None
    spent: int
    halted: str | None  # why the run stopped dispatching, if it did


def read_run_account(session: Session, graph_exec_id: str) -> RunAccount:
    row = session.execute(
        select(
            GraphExecution.user_id,
            GraphExecution.graph_id,
            GraphExecution.credit_budget,
            GraphExecution.credits_spent,
            GraphExecution.charge_error,
        ).where(GraphExecution.id == graph_exec_id)
    ).one()
    return RunAccount(
        graph_exec_id, row.user_id, row.graph_id, row.credit_budget, row.credits_spent,
        row.charge_error,
    )  # fmt: skip


def run_account_of(execution: GraphExecution) -> RunAccount:
    """The account of a run this transaction loaded under its row lock."""
    return RunAccount(
        execution.id, execution.user_id, execution.graph_id, execution.credit_budget,
        execution.credits_spent, execution.charge_error,
    )  # fmt: skip


def add_spent(session: Session, run: RunAccount, amount: int) -> None:
    run.spent += amount
    session.execute(
        update(GraphExecution)
        .where(GraphExecution.id == run.graph_exec_id)
        .values(credits_spent=GraphExecution.credits_spent + amount)
    )


def halt(session: Session, run: RunAccount, reason: str) -> None:
    """Stop the run's dispatching: what runs finishes, nothing more starts, it ends FAILED."""
    if run.halted is not None:
        return
    run.halted = reason
    session.execute(
        update(GraphExecution)
        .where(GraphExecution.id == run.graph_exec_id, GraphExecution.charge_error.is_(None))
        .values(charge_error=reason)
    )
