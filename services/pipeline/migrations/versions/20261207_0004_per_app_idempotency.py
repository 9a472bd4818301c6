"""Idempotency keys are per application: one change per (app, request_id).

A key alone was global, so one team could take the (predictable) key of another team's
request: that request then returned the first team's change instead of making its own.

Revision ID: 20261207_0004
Revises: 20261130_0003
Create Date: 2026-12-07
"""

from alembic import op

revision = "20261207_0004"
down_revision = "20261130_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_unique_constraint("uq_changes_app_request_id", "changes", ["app", "request_id"])
    op.drop_constraint("uq_changes_request_id", "changes", type_="unique")


def downgrade() -> None:
    # Fails while two applications share a key, which only the per-application rule allows.
    op.create_unique_constraint("uq_changes_request_id", "changes", ["request_id"])
    op.drop_constraint("uq_changes_app_request_id", "changes", type_="unique")
