"""Decisions with their explanations, and per-application state learned from deploy-done.

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
    op.create_table(
        "decisions",
        sa.Column("decision_id", sa.String(64), primary_key=True),
        sa.Column("app", sa.String(128), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("policy", sa.String(64), nullable=False),
        sa.Column("current_replicas", sa.Integer, nullable=False),
        sa.Column("desired_replicas", sa.Integer, nullable=False),
        sa.Column("capacity_per_instance", sa.Float, nullable=True),
        sa.Column("forecast", sa.JSON, nullable=True),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("published", sa.Boolean, nullable=False),
        sa.Column("event_id", sa.String(64), nullable=True),
        sa.Column(
            "decided_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.UniqueConstraint("app", "window_end", name="uq_decisions_app_window_end"),
    )
    op.create_table(
        "app_state",
        sa.Column("app", sa.String(128), primary_key=True),
        sa.Column("desired_replicas", sa.Integer, nullable=True),
        sa.Column("delay_s", sa.Float, nullable=True),
        sa.Column("last_sequence", sa.BigInteger, nullable=True),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )


def downgrade() -> None:
    op.drop_table("app_state")
    op.drop_table("decisions")
