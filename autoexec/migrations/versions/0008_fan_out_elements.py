"""Fan-out elements (SPEC §8.3): each element's result, recorded in the database so that a
fan-out gathers even when the chord's state in Redis is lost.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the type in autoexec.store.tables.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "fan_out_elements",
        sa.Column("node_exec_id", BIG_ID, nullable=False),
        sa.Column("element_index", sa.Integer(), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["node_exec_id"],
            ["node_executions.id"],
            name=op.f("fk_fan_out_elements_node_exec_id_node_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("node_exec_id", "element_index", name=op.f("pk_fan_out_elements")),
    )


def downgrade() -> None:
    op.drop_table("fan_out_elements")
