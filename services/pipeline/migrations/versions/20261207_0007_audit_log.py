"""Who used an operator control (freeze, windows, pin, change actions) and when.

Revision ID: 20261207_0007
Revises: 20261207_0006
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "20261207_0007"
down_revision = "20261207_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column(
            "action",
            sa.String(32),
            nullable=False,
            comment="freeze, lift-freeze, windows, unpin, ...",
        ),
        sa.Column("app", sa.String(128), nullable=True, comment="none: platform-wide"),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        comment="who used an operator control, and when (the controls keep only their state)",
    )
    op.create_index("ix_audit_log_app", "audit_log", ["app"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_app", table_name="audit_log")
    op.drop_table("audit_log")
