"""The address each instance answers at (its host's, with the ssh driver), beside its port.

Revision ID: 20261207_0008
Revises: 20261207_0007
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "20261207_0008"
down_revision = "20261207_0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "instances",
        sa.Column(
            "address",
            sa.String(253),
            nullable=True,
            comment="host name or IPv4 address the instance answers at; null: 127.0.0.1",
        ),
    )


def downgrade() -> None:
    op.drop_column("instances", "address")
