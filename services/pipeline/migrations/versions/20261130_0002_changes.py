"""Changes, per-application state, freezes and windows, managed instances and artifacts.

Revision ID: 20261130_0002
Revises: 20261130_0001
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "20261130_0002"
down_revision = "20261130_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "changes",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("app", sa.String(128), nullable=False),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("body", sa.JSON, nullable=False, comment="the domain Change, serialised"),
        sa.Column("batch", sa.JSON, nullable=False, comment="the BatchSpec the change is cut with"),
        sa.Column("artifact", sa.String(64), nullable=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("cause", sa.String(300), nullable=True),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.UniqueConstraint("seq", name="uq_changes_seq"),
        sa.UniqueConstraint("request_id", name="uq_changes_request_id"),
    )
    op.create_index("ix_changes_app", "changes", ["app"])
    op.create_index("ix_changes_state", "changes", ["state"])
    op.create_table(
        "app_state",
        sa.Column("app", sa.String(128), primary_key=True),
        sa.Column("version", sa.String(128), nullable=True),
        sa.Column("replicas", sa.Integer, nullable=False, server_default="0"),
        sa.Column("sequence", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("artifacts", sa.JSON, nullable=False, comment="version -> artifact sha256"),
        sa.Column("pin", sa.JSON, nullable=True),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_table(
        "freezes",
        sa.Column("scope", sa.String(64), primary_key=True, comment="'global'"),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "change_windows",
        sa.Column("app", sa.String(128), primary_key=True),
        sa.Column(
            "windows", sa.JSON, nullable=False, comment="texts such as 'Mon-Fri 09:00-17:00 UTC'"
        ),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_table(
        "instances",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("app", sa.String(128), nullable=False),
        sa.Column("change_id", sa.String(64), nullable=True),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("artifact", sa.String(64), nullable=False),
        sa.Column("host", sa.String(128), nullable=False),
        sa.Column("zone", sa.String(128), nullable=False),
        sa.Column("port", sa.Integer, nullable=True),
        sa.Column("pid", sa.Integer, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ready_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_instances_app", "instances", ["app"])
    op.create_table(
        "artifacts",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("uploaded_by", sa.String(200), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )


def downgrade() -> None:
    for table in ("artifacts", "instances", "change_windows", "freezes", "app_state", "changes"):
        op.drop_table(table)
