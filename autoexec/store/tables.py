"""The database schema (SQLAlchemy 2.x typed mappings). Works on PostgreSQL and SQLite."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from autoexec.clock import utcnow as utcnow  # re-exported: store modules and tests use it
from autoexec.statuses import ExecutionStatus

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Plain JSON (text), not JSONB: user values must come back exactly as sent; JSONB reorders
# dict keys and rewrites numbers (1e+23 becomes an integer, -0.0 becomes 0).
Json = JSON()
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Status(TypeDecorator[ExecutionStatus]):
    """A status stored as text and read back as ``ExecutionStatus``."""

    impl = String(16)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else ExecutionStatus(value).value

    def process_result_value(self, value: Any, dialect: Dialect) -> ExecutionStatus | None:
        return None if value is None else ExecutionStatus(value)


class Timestamp(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp, also on SQLite (which drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if isinstance(value, datetime) and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value  # type: ignore[no-any-return]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)


class GraphVersion(Base):
    """One saved version of a graph; versions are immutable."""

    __tablename__ = "graphs"
    __table_args__ = (Index("ix_graphs_user_name", "user_id", "name"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(256))
    description: Mapped[str] = mapped_column(Text, default="")
    definition: Mapped[dict[str, Any]] = mapped_column(Json)
    content_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)


class GraphExecution(Base):
    __tablename__ = "graph_executions"
    __table_args__ = (
        ForeignKeyConstraint(["graph_id", "graph_version"], ["graphs.id", "graphs.version"]),
        Index("ix_graph_executions_user_status", "user_id", "status", "created_at"),
        # The reconciler's "QUEUED or RUNNING, unchanged since T", across users.
        Index("ix_graph_executions_status_updated", "status", "updated_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    graph_id: Mapped[str] = mapped_column(String(64))
    graph_version: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    status: Mapped[ExecutionStatus] = mapped_column(Status(), default=ExecutionStatus.QUEUED)
    inputs: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    nodes_input_masks: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    nodes_to_skip: Mapped[list[str]] = mapped_column(Json, default=list)
    stats: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    parent_execution_id: Mapped[str | None] = mapped_column(String(36), index=True)
    root_execution_id: Mapped[str | None] = mapped_column(String(36), index=True)
    # A child execution (SPEC §8.1): the parent's node execution that waits for it.
    parent_node_exec_id: Mapped[int | None] = mapped_column(BigId, index=True)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(Timestamp())
    # Run limits: the deadline counts from started_at; the counter is of node executions
    # that became QUEUED, raised by each delivery transaction under the row lock.
    max_run_seconds: Mapped[float | None] = mapped_column(Float)
    node_execution_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Credits (SPEC §6): what the run may spend, what it has spent, and why it stopped
    # dispatching (a charge refused); all written under the row lock.
    credit_budget: Mapped[int | None] = mapped_column(BigInteger)
    credits_spent: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    charge_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(Timestamp())
    ended_at: Mapped[datetime | None] = mapped_column(Timestamp())
    updated_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)


class NodeExecution(Base):
    __tablename__ = "node_executions"
    __table_args__ = (
        # "the earliest INCOMPLETE execution of node N lacking pin P" (SPEC §3.2) scans only
        # the INCOMPLETE executions of one node, in creation order.
        Index(
            "ix_node_executions_incomplete",
            "graph_exec_id",
            "node_id",
            "id",
            postgresql_where=text("status = 'INCOMPLETE'"),
            sqlite_where=text("status = 'INCOMPLETE'"),
        ),
        Index("ix_node_executions_graph_status", "graph_exec_id", "status"),
        # The orchestrator's "what is ready but not yet sent" query.
        Index(
            "ix_node_executions_undispatched",
            "graph_exec_id",
            "id",
            postgresql_where=text("status = 'QUEUED' AND NOT dispatched"),
            sqlite_where=text("status = 'QUEUED' AND NOT dispatched"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    graph_exec_id: Mapped[str] = mapped_column(ForeignKey("graph_executions.id"))
    node_id: Mapped[str] = mapped_column(String(128))
    block_id: Mapped[str] = mapped_column(String(128))
    status: Mapped[ExecutionStatus] = mapped_column(Status(), default=ExecutionStatus.INCOMPLETE)
    input_data: Mapped[dict[str, Any] | None] = mapped_column(Json)
    stats: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    # Times the worker running it was lost (its message re-delivered while it was RUNNING).
    worker_losses: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    celery_task_id: Mapped[str | None] = mapped_column(String(64))
    dispatched: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)
    queued_at: Mapped[datetime | None] = mapped_column(Timestamp())
    started_at: Mapped[datetime | None] = mapped_column(Timestamp())
    ended_at: Mapped[datetime | None] = mapped_column(Timestamp())
    updated_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)


class NodeExecutionInput(Base):
    """One value delivered to one input pin of one node execution."""

    __tablename__ = "node_execution_inputs"

    node_exec_id: Mapped[int] = mapped_column(
        ForeignKey("node_executions.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(256), primary_key=True)
    value: Mapped[Any] = mapped_column(Json, nullable=True)


class NodeExecutionOutput(Base):
    """One value yielded by a node execution; append-only, ``seq`` is the yield order."""

    __tablename__ = "node_execution_outputs"
    __table_args__ = (
        Index("uq_node_execution_outputs_exec_seq", "node_exec_id", "seq", unique=True),
        Index("ix_node_execution_outputs_graph", "graph_exec_id", "id"),
        Index(
            "ix_node_execution_outputs_undelivered",
            "graph_exec_id",
            "id",
            postgresql_where=text("NOT delivered"),
            sqlite_where=text("NOT delivered"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    node_exec_id: Mapped[int] = mapped_column(ForeignKey("node_executions.id", ondelete="CASCADE"))
    graph_exec_id: Mapped[str] = mapped_column(String(36))
    seq: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(256))
    value: Mapped[Any] = mapped_column(Json, nullable=True)
    delivered: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)


class FanOutElement(Base):
    """The result of one element of a fan-out node execution (SPEC §8.3), recorded by the
    element's task: the gather reads these, so a chord whose state in Redis was lost still
    gathers, and an element whose result is recorded is not run again."""

    __tablename__ = "fan_out_elements"

    node_exec_id: Mapped[int] = mapped_column(
        ForeignKey("node_executions.id", ondelete="CASCADE"), primary_key=True
    )
    element_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    outputs: Mapped[Any] = mapped_column(Json, nullable=True)  # [pin, value] pairs, yield order
    error: Mapped[str | None] = mapped_column(Text)


class StaticInput(Base):
    """The latest value that arrived on a static link (SPEC §3.4)."""

    __tablename__ = "execution_static_inputs"

    graph_exec_id: Mapped[str] = mapped_column(
        ForeignKey("graph_executions.id", ondelete="CASCADE"), primary_key=True
    )
    node_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(256), primary_key=True)
    value: Mapped[Any] = mapped_column(Json, nullable=True)


class Review(Base):
    """A human review a suspended node execution waits for (SPEC §8.2)."""

    __tablename__ = "reviews"
    __table_args__ = (Index("ix_reviews_user_status", "user_id", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    graph_exec_id: Mapped[str] = mapped_column(
        ForeignKey("graph_executions.id", ondelete="CASCADE")
    )
    node_exec_id: Mapped[int] = mapped_column(
        ForeignKey("node_executions.id", ondelete="CASCADE"), unique=True
    )
    user_id: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="PENDING")
    data: Mapped[Any] = mapped_column(Json, nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    decided_data: Mapped[Any] = mapped_column(Json, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(Timestamp())


class CreditBalance(Base):
    """A user's running credit balance: the sum of their ledger, updated in the transaction
    that writes each ledger row. ``top_ups`` counts top-ups (a new one re-arms the
    zero-balance notice)."""

    __tablename__ = "credit_balances"

    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    top_ups: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)


class CreditTransaction(Base):
    """One change of a user's balance (the ledger); ``key`` makes each change happen once."""

    __tablename__ = "credit_transactions"
    __table_args__ = (
        Index("ix_credit_transactions_user", "user_id", "id"),
        Index("ix_credit_transactions_graph_exec", "graph_exec_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))  # TOP_UP, CHARGE, REFUND, ADJUSTMENT
    amount: Mapped[int] = mapped_column(BigInteger)  # signed: a charge is negative
    balance_after: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    graph_exec_id: Mapped[str | None] = mapped_column(String(36))
    node_exec_id: Mapped[int | None] = mapped_column(BigId)
    created_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)
