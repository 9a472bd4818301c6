"""Items, their revisions and change sets, spec revisions, instance-set watermarks, change requests.

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


def upgrade() -> None:
    op.create_table(
        "items",
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("id", sa.String(253), nullable=False),
        sa.Column("data", JSONB, nullable=False),
        sa.Column("labels", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("app_id", sa.String(253), nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kind", "id", name="pk_items"),
    )
    op.create_index("ix_items_labels", "items", ["labels"], postgresql_using="gin")
    op.create_index("ix_items_kind_app_id", "items", ["kind", "app_id"])
    op.create_index(
        "ix_items_instance_host",
        "items",
        [sa.text("(data ->> 'host_id')")],
        postgresql_where=sa.text("kind = 'instance'"),
    )
    op.create_table(
        "change_sets",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(300), nullable=False),
        sa.Column("cause", sa.String(300), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reverts", sa.String(64), nullable=True),
        sa.Column("reverted_by", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_change_sets"),
    )
    op.create_table(
        "revisions",
        sa.Column("sequence", sa.BigInteger, autoincrement=True, nullable=False),
        sa.Column("change_set_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("item_id", sa.String(253), nullable=False),
        sa.Column("op", sa.String(16), nullable=False),
        sa.Column("before", JSONB, nullable=True),
        sa.Column("after", JSONB, nullable=True),
        sa.Column("actor", sa.String(300), nullable=False),
        sa.Column("cause", sa.String(300), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sequence", name="pk_revisions"),
    )
    op.create_index("ix_revisions_change_set_id", "revisions", ["change_set_id"])
    op.create_index("ix_revisions_item", "revisions", ["kind", "item_id", "sequence"])
    op.create_table(
        "spec_revisions",
        sa.Column("app_id", sa.String(253), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("spec", JSONB, nullable=False),
        sa.Column("change_set_id", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(300), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("app_id", "revision", name="pk_spec_revisions"),
    )
    op.create_table(
        "instance_watermarks",
        sa.Column("app_id", sa.String(253), nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("app_id", name="pk_instance_watermarks"),
    )
    op.create_table(
        "change_requests",
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("app_id", sa.String(253), nullable=False),
        sa.Column("spec_revision", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("request_id", name="pk_change_requests"),
    )


def downgrade() -> None:
    for table in (
        "change_requests",
        "instance_watermarks",
        "spec_revisions",
        "revisions",
        "change_sets",
        "items",
    ):
        op.drop_table(table)
