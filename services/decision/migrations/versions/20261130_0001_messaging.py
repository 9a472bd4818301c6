"""Outbox and inbox of the decision service.

Revision ID: 20261130_0001
Revises:
Create Date: 2026-11-30
"""

from alembic import op

from ooda.migrations import create_messaging_v1, drop_messaging_v1

revision = "20261130_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_messaging_v1(op)


def downgrade() -> None:
    drop_messaging_v1(op)
