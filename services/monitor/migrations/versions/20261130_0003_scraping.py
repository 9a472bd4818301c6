"""Targets and their scrape state, pushed samples, rollup tiers, alert rules and alerts.

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
    op.add_column("rollups", sa.Column("step_s", sa.Float, nullable=False, server_default="0"))
    op.add_column("rollups", sa.Column("staleness_s", sa.Float, nullable=False, server_default="0"))
    op.add_column("rollups", sa.Column("requests", sa.Float, nullable=False, server_default="0"))
    op.add_column("rollups", sa.Column("errors", sa.Float, nullable=False, server_default="0"))
    op.add_column("rollups", sa.Column("latency", sa.JSON, nullable=True))
    op.execute("UPDATE rollups SET step_s = EXTRACT(EPOCH FROM (window_end - window_start))")
    op.drop_constraint("uq_rollups_app_window_end", "rollups", type_="unique")
    op.create_unique_constraint(
        "uq_rollups_app_step_s_window_end", "rollups", ["app", "step_s", "window_end"]
    )
    op.create_table(
        "targets",
        sa.Column("instance_id", sa.String(200), primary_key=True),
        sa.Column("app", sa.String(128), nullable=False),
        sa.Column("url", sa.String(1000), nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column(
            "discovered_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.Column("up", sa.Boolean, nullable=True),
        sa.Column("last_scrape_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Float, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("series", sa.Integer, nullable=False, server_default="0"),
        sa.Column("dropped", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "pushed_samples",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("app", sa.String(128), nullable=False),
        sa.Column("instance", sa.String(200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("samples", sa.JSON, nullable=False),
        sa.Column("pushed_by", sa.String(200), nullable=False),
    )
    op.create_index(
        "ix_pushed_samples_app_instance_at", "pushed_samples", ["app", "instance", "at"]
    )
    op.create_table(
        "alert_rules",
        sa.Column("app", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_table(
        "alert_states",
        sa.Column("app", sa.String(128), primary_key=True),
        sa.Column("rule", sa.String(200), primary_key=True),
        sa.Column("pending_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("alert_id", sa.String(64), nullable=True),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("clear_since", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "alerts",
        sa.Column("alert_id", sa.String(64), primary_key=True),
        sa.Column("app", sa.String(128), nullable=False),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_alerts_state", "alerts", ["state"])


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_table("alert_states")
    op.drop_table("alert_rules")
    op.drop_table("pushed_samples")
    op.drop_table("targets")
    op.drop_constraint("uq_rollups_app_step_s_window_end", "rollups", type_="unique")
    op.create_unique_constraint("uq_rollups_app_window_end", "rollups", ["app", "window_end"])
    for column in ("latency", "errors", "requests", "staleness_s", "step_s"):
        op.drop_column("rollups", column)
