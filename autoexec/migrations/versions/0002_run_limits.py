"""Run limits: an optional run deadline and a node-execution counter per graph execution.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

``max_run_seconds`` counts from ``started_at``; ``node_execution_count`` is raised by each
delivery transaction and checked against AUTOEXEC_MAX_NODE_EXECUTIONS_PER_RUN. Existing rows
get no deadline and a count of 0.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("graph_executions") as batch:
        batch.add_column(sa.Column("max_run_seconds", sa.Float(), nullable=True))
        batch.add_column(
            sa.Column("node_execution_count", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("graph_executions") as batch:
        batch.drop_column("node_execution_count")
        batch.drop_column("max_run_seconds")
