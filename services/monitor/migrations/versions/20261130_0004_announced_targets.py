"""Targets announced by deployers before the CMDB knows them, and each target's source.

Revision ID: 20261130_0004
Revises: 20261130_0003
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "20261130_0004"
down_revision = "20261130_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "targets", sa.Column("source", sa.String(16), nullable=False, server_default="sd")
    )
    op.create_table(
        "announced_targets",
        sa.Column("instance_id", sa.String(200), primary_key=True),
        sa.Column("app", sa.String(128), nullable=False),
        sa.Column("endpoint", sa.String(300), nullable=False),
        sa.Column("metrics_path", sa.String(200), nullable=False),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("zone", sa.String(128), nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("announced_by", sa.String(200), nullable=False),
        sa.Column("announced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_announced_targets_app", "announced_targets", ["app"])
    op.create_index("ix_announced_targets_expires_at", "announced_targets", ["expires_at"])


def downgrade() -> None:
    op.drop_table("announced_targets")
    op.drop_column("targets", "source")
