"""Each artifact counts against the quota of the team that uploaded it.

Revision ID: 20261207_0006
Revises: 20261207_parking
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "20261207_0006"
down_revision = "20261207_parking"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "artifacts",
        sa.Column(
            "team",
            sa.String(253),
            nullable=True,
            comment="the team whose quota the artifact counts against (none before quotas)",
        ),
    )
    op.create_index(op.f("ix_artifacts_team"), "artifacts", ["team"])


def downgrade() -> None:
    op.drop_index(op.f("ix_artifacts_team"), table_name="artifacts")
    op.drop_column("artifacts", "team")
