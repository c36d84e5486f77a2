"""Credits (SPEC §6): the ledger, balances, and a run's budget and spend.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types in autoexec.store.tables.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("graph_executions", sa.Column("credit_budget", sa.BigInteger(), nullable=True))
    op.add_column(
        "graph_executions",
        sa.Column("credits_spent", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.add_column("graph_executions", sa.Column("charge_error", sa.Text(), nullable=True))
    op.create_table(
        "credit_balances",
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("top_ups", sa.Integer(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_credit_balances")),
    )
    op.create_table(
        "credit_transactions",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("graph_exec_id", sa.String(36), nullable=True),
        sa.Column("node_exec_id", BIG_ID, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_transactions")),
        sa.UniqueConstraint("key", name=op.f("uq_credit_transactions_key")),
    )
    op.create_index("ix_credit_transactions_user", "credit_transactions", ["user_id", "id"])
    op.create_index("ix_credit_transactions_graph_exec", "credit_transactions", ["graph_exec_id"])


def downgrade() -> None:
    op.drop_index("ix_credit_transactions_graph_exec", "credit_transactions")
    op.drop_index("ix_credit_transactions_user", "credit_transactions")
    op.drop_table("credit_transactions")
    op.drop_table("credit_balances")
    op.drop_column("graph_executions", "charge_error")
    op.drop_column("graph_executions", "credits_spent")
    op.drop_column("graph_executions", "credit_budget")
