"""The reconciler's index: graph executions by status and last change.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

The reconciler looks for QUEUED and RUNNING executions not updated since a moment, across
users; ``ix_graph_executions_user_status`` serves one user at a time only.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_graph_executions_status_updated", "graph_executions", ["status", "updated_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_graph_executions_status_updated", table_name="graph_executions")
