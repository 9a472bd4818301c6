"""Who replaced an application's alert rules or withdrew its announced targets, and when.

Revision ID: 20261207_0005
Revises: 20261207_parking
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "20261207_0005"
down_revision = "20261207_parking"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(32), nullable=False, comment="alert-rules, withdraw"),
        sa.Column("app", sa.String(128), nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        comment="who replaced alert rules or withdrew targets, and when (those rows are deleted)",
    )
    op.create_index("ix_audit_log_app", "audit_log", ["app"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_app", table_name="audit_log")
    op.drop_table("audit_log")
