"""Human reviews: what a node execution suspended in REVIEW waits for (SPEC §8.2).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types in autoexec.store.tables.
JSON = sa.JSON()
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("graph_exec_id", sa.String(length=36), nullable=False),
        sa.Column("node_exec_id", BIG_ID, nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("data", JSON, nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("decided_data", JSON, nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("decided_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["graph_exec_id"],
            ["graph_executions.id"],
            name=op.f("fk_reviews_graph_exec_id_graph_executions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["node_exec_id"],
            ["node_executions.id"],
            name=op.f("fk_reviews_node_exec_id_node_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviews")),
        sa.UniqueConstraint("node_exec_id", name=op.f("uq_reviews_node_exec_id")),
    )
    op.create_index("ix_reviews_user_status", "reviews", ["user_id", "status", "created_at"])


def downgrade() -> None:
    op.drop_table("reviews")
