"""Policies, budgets, quotas, learned state, usage samples, outcomes and migrations.

Revision ID: 20261130_0002
Revises: 20261130_0001
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "20261130_0002"
down_revision = "20261130_0001"
branch_labels = None
depends_on = None


def _updated_at() -> sa.Column:
    return sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    )


def upgrade() -> None:
    op.create_table(
        "policies",
        sa.Column("app", sa.String(128), primary_key=True),
        sa.Column("team", sa.String(128), nullable=False),
        sa.Column("policy", JSONB, nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        _updated_at(),
    )
    op.create_index("ix_policies_team", "policies", ["team"])
    op.create_table(
        "budgets",
        sa.Column("team", sa.String(128), primary_key=True),
        sa.Column("budget", JSONB, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        _updated_at(),
    )
    op.create_table(
        "quotas",
        sa.Column("team", sa.String(128), nullable=False),
        sa.Column("scope", sa.String(10), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("cpu_millis", sa.BigInteger, nullable=False),
        sa.Column("memory_mib", sa.BigInteger, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        _updated_at(),
        sa.PrimaryKeyConstraint("team", "scope", "name", name="pk_quotas"),
    )
    op.create_table(
        "app_state",
        sa.Column("app", sa.String(128), primary_key=True),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("replicas_by_zone", JSONB, nullable=False),
        sa.Column("instances", JSONB, nullable=False),
        sa.Column("pending", JSONB, nullable=True),
        _updated_at(),
    )
    op.create_table(
        "actions",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("app", sa.String(128), nullable=False),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("app", "request_id", name="uq_actions_app_request_id"),
    )
    op.create_table(
        "usage_samples",
        sa.Column("app", sa.String(128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replicas", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("app", "at", name="pk_usage_samples"),
    )
    op.create_table(
        "outcomes",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("decision_id", sa.String(200), nullable=False),
        sa.Column("app", sa.String(128), nullable=False),
        sa.Column("team", sa.String(128), nullable=False),
        sa.Column("cause", sa.String(200), nullable=False),
        sa.Column("inputs", JSONB, nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("current_replicas", sa.Integer, nullable=False),
        sa.Column("requested_replicas", sa.Integer, nullable=False),
        sa.Column("final_replicas", sa.Integer, nullable=False),
        sa.Column("placement", JSONB, nullable=False),
        sa.Column("clipped_by", JSONB, nullable=False),
        sa.Column("hold_reason", sa.Text, nullable=True),
        sa.Column("notes", JSONB, nullable=False),
        sa.Column("change_request_id", sa.String(200), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("decision_id", name="uq_outcomes_decision_id"),
    )
    op.create_index("ix_outcomes_app", "outcomes", ["app"])
    op.create_table(
        "migrations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("source", JSONB, nullable=False),
        sa.Column("target", JSONB, nullable=True),
        sa.Column("max_batch_size", sa.Integer, nullable=False),
        sa.Column("plan", JSONB, nullable=False),
        sa.Column("change_request_ids", JSONB, nullable=False),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )


def downgrade() -> None:
    for table in (
        "migrations",
        "outcomes",
        "usage_samples",
        "actions",
        "app_state",
        "quotas",
        "budgets",
        "policies",
    ):
        op.drop_table(table)
