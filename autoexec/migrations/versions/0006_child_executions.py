"""Child executions (SPEC §8.1): the parent's node execution that waits for each one.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-09
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the type in autoexec.store.tables.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("graph_executions", sa.Column("parent_node_exec_id", BIG_ID, nullable=True))
    op.create_index(
        op.f("ix_graph_executions_parent_node_exec_id"),
        "graph_executions",
        ["parent_node_exec_id"],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_graph_executions_parent_node_exec_id"), "graph_executions")
    op.drop_column("graph_executions", "parent_node_exec_id")
