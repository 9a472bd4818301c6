"""The relay parks outbox rows the broker refuses (too large) instead of retrying them forever.

Revision ID: 20261207_parking
Revises: 20261207_0004
Create Date: 2026-12-07
"""

from alembic import op

from ooda.migrations import add_outbox_parking, drop_outbox_parking

revision = "20261207_parking"
down_revision = "20261207_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_outbox_parking(op)


def downgrade() -> None:
    drop_outbox_parking(op)
