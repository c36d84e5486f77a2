"""Worker losses: how many times the worker running a node execution was lost.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

A node execution whose message is re-delivered while it is RUNNING (its worker was killed or
crashed) counts one loss; at AUTOEXEC_MAX_WORKER_LOSSES it ends FAILED instead of running
again. Existing rows start at 0.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("node_executions") as batch:
        batch.add_column(
            sa.Column("worker_losses", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("node_executions") as batch:
        batch.drop_column("worker_losses")
