"""Initial schema: users, graph versions, graph and node executions, their inputs and outputs.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Works on PostgreSQL and SQLite: JSON columns are plain JSON (values come back exactly as sent;
JSONB would reorder keys and rewrite numbers), ids are INTEGER on SQLite
(so they autoincrement), and the partial indexes carry both dialects' WHERE clauses.
"""

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types in autoexec.store.tables, so later model changes cannot alter
# what this revision creates.
JSON = sa.JSON()
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
STATUS = sa.String(length=16)
INCOMPLETE_ONLY = "status = 'INCOMPLETE'"
UNDELIVERED_ONLY = "NOT delivered"
UNDISPATCHED_ONLY = "status = 'QUEUED' AND NOT dispatched"


def timestamp(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    create_users()
    create_graphs()
    create_graph_executions()
    create_execution_static_inputs()
    create_node_executions()
    create_node_execution_inputs()
    create_node_execution_outputs()


def create_users() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(length=128), nullable=False),
        timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
    )


def create_graphs() -> None:
    op.create_table(
        "graphs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("definition", JSON, nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        timestamp("created_at"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_graphs_user_id_users")),
        sa.PrimaryKeyConstraint("id", "version", name=op.f("pk_graphs")),
    )
    op.create_index(op.f("ix_graphs_user_id"), "graphs", ["user_id"])
    op.create_index("ix_graphs_user_name", "graphs", ["user_id", "name"])


def create_graph_executions() -> None:
    op.create_table(
        "graph_executions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("graph_id", sa.String(length=64), nullable=False),
        sa.Column("graph_version", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("status", STATUS, nullable=False),
        sa.Column("inputs", JSON, nullable=False),
        sa.Column("nodes_input_masks", JSON, nullable=False),
        sa.Column("nodes_to_skip", JSON, nullable=False),
        sa.Column("stats", JSON, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("parent_execution_id", sa.String(length=36), nullable=True),
        sa.Column("root_execution_id", sa.String(length=36), nullable=True),
        timestamp("cancel_requested_at", nullable=True),
        timestamp("created_at"),
        timestamp("started_at", nullable=True),
        timestamp("ended_at", nullable=True),
        timestamp("updated_at"),
        sa.ForeignKeyConstraint(
            ["graph_id", "graph_version"],
            ["graphs.id", "graphs.version"],
            name=op.f("fk_graph_executions_graph_id_graphs"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_graph_executions_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_graph_executions")),
    )
    op.create_index(
        op.f("ix_graph_executions_parent_execution_id"),
        "graph_executions",
        ["parent_execution_id"],
    )
    op.create_index(
        op.f("ix_graph_executions_root_execution_id"), "graph_executions", ["root_execution_id"]
    )
    op.create_index(
        "ix_graph_executions_user_status", "graph_executions", ["user_id", "status", "created_at"]
    )


def create_execution_static_inputs() -> None:
    op.create_table(
        "execution_static_inputs",
        sa.Column("graph_exec_id", sa.String(length=36), nullable=False),
        sa.Column("node_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("value", JSON, nullable=True),
        sa.ForeignKeyConstraint(
            ["graph_exec_id"],
            ["graph_executions.id"],
            name=op.f("fk_execution_static_inputs_graph_exec_id_graph_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "graph_exec_id", "node_id", "name", name=op.f("pk_execution_static_inputs")
        ),
    )


def create_node_executions() -> None:
    op.create_table(
        "node_executions",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("graph_exec_id", sa.String(length=36), nullable=False),
        sa.Column("node_id", sa.String(length=128), nullable=False),
        sa.Column("block_id", sa.String(length=128), nullable=False),
        sa.Column("status", STATUS, nullable=False),
        sa.Column("input_data", JSON, nullable=True),
        sa.Column("stats", JSON, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("celery_task_id", sa.String(length=64), nullable=True),
        sa.Column("dispatched", sa.Boolean(), nullable=False),
        timestamp("created_at"),
        timestamp("queued_at", nullable=True),
        timestamp("started_at", nullable=True),
        timestamp("ended_at", nullable=True),
        timestamp("updated_at"),
        sa.ForeignKeyConstraint(
            ["graph_exec_id"],
            ["graph_executions.id"],
            name=op.f("fk_node_executions_graph_exec_id_graph_executions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_node_executions")),
    )
    op.create_index(
        "ix_node_executions_graph_status", "node_executions", ["graph_exec_id", "status"]
    )
    op.create_index(
        "ix_node_executions_incomplete",
        "node_executions",
        ["graph_exec_id", "node_id", "id"],
        postgresql_where=sa.text(INCOMPLETE_ONLY),
        sqlite_where=sa.text(INCOMPLETE_ONLY),
    )
    op.create_index(
        "ix_node_executions_undispatched",
        "node_executions",
        ["graph_exec_id", "id"],
        postgresql_where=sa.text(UNDISPATCHED_ONLY),
        sqlite_where=sa.text(UNDISPATCHED_ONLY),
    )


def create_node_execution_inputs() -> None:
    op.create_table(
        "node_execution_inputs",
        sa.Column("node_exec_id", BIG_ID, nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("value", JSON, nullable=True),
        sa.ForeignKeyConstraint(
            ["node_exec_id"],
            ["node_executions.id"],
            name=op.f("fk_node_execution_inputs_node_exec_id_node_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("node_exec_id", "name", name=op.f("pk_node_execution_inputs")),
    )


def create_node_execution_outputs() -> None:
    op.create_table(
        "node_execution_outputs",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("node_exec_id", BIG_ID, nullable=False),
        sa.Column("graph_exec_id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("value", JSON, nullable=True),
        sa.Column("delivered", sa.Boolean(), nullable=False),
        timestamp("created_at"),
        sa.ForeignKeyConstraint(
            ["node_exec_id"],
            ["node_executions.id"],
            name=op.f("fk_node_execution_outputs_node_exec_id_node_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_node_execution_outputs")),
    )
    op.create_index(
        "ix_node_execution_outputs_undelivered",
        "node_execution_outputs",
        ["graph_exec_id", "id"],
        postgresql_where=sa.text(UNDELIVERED_ONLY),
        sqlite_where=sa.text(UNDELIVERED_ONLY),
    )
    op.create_index(
        "ix_node_execution_outputs_graph", "node_execution_outputs", ["graph_exec_id", "id"]
    )
    op.create_index(
        "uq_node_execution_outputs_exec_seq",
        "node_execution_outputs",
        ["node_exec_id", "seq"],
        unique=True,
    )


def downgrade() -> None:
    # Dropping a table drops its indexes; children before parents.
    for table in (
        "node_execution_outputs",
        "node_execution_inputs",
        "node_executions",
        "execution_static_inputs",
        "graph_executions",
        "graphs",
        "users",
    ):
        op.drop_table(table)
