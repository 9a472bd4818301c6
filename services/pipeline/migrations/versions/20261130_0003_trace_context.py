"""The trace context a change was requested in, so its later events continue that trace.

Revision ID: 20261130_0003
Revises: 20261130_0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "20261130_0003"
down_revision = "20261130_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "changes",
        sa.Column(
            "traceparent",
            sa.String(128),
            nullable=True,
            comment="W3C traceparent of the request; the change's events continue its trace",
        ),
    )
    op.add_column("changes", sa.Column("tracestate", sa.String(512), nullable=True))


def downgrade() -> None:
    op.drop_column("changes", "tracestate")
    op.drop_column("changes", "traceparent")
