"""Indexes for reads at scale: trigram search over snapshots, label containment by path, and
live instances by zone, host and application; statistics on the fields these queries filter by.

Revision ID: 20261130_0003
Revises: 20261130_0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "20261130_0003"
down_revision = "20261130_0002"
branch_labels = None
depends_on = None

LIVE_INSTANCE = "kind = 'instance' AND NOT deleted AND (data ->> 'status') IN ('starting', 'ready')"

STATISTICS = (
    ("st_items_status", "(data ->> 'status')"),
    ("st_items_zone_id", "(data ->> 'zone_id')"),
    ("st_items_host_id", "(data ->> 'host_id')"),
)


def upgrade() -> None:
    # pg_trgm is a trusted extension (PostgreSQL 13+): the database owner may create it.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute("CREATE INDEX ix_items_search ON items USING gin ((data::text) gin_trgm_ops)")
    # `labels @> {"k": "v"}` (selectors' `k=v`) through one entry per key and value together;
    # ix_items_labels (jsonb_ops) stays for `labels ? k` (selectors' `k`).
    op.create_index(
        "ix_items_labels_path",
        "items",
        ["labels"],
        postgresql_using="gin",
        postgresql_ops={"labels": "jsonb_path_ops"},
    )
    for name, expression in (
        ("ix_items_live_instance_zone", "(data ->> 'zone_id')"),
        ("ix_items_live_instance_host", "(data ->> 'host_id')"),
        ("ix_items_live_instance_app", "app_id"),
    ):
        op.create_index(
            name, "items", [sa.text(expression)], postgresql_where=sa.text(LIVE_INSTANCE)
        )
    # What share of the items each status, zone and host has: without these, the planner guesses
    # (and the statistics of partial indexes are not used for the whole table).
    for name, expression in STATISTICS:
        op.execute(f"CREATE STATISTICS {name} ON ({expression}) FROM items")


def downgrade() -> None:
    for name, _ in STATISTICS:
        op.execute(f"DROP STATISTICS {name}")
    for name in (
        "ix_items_live_instance_app",
        "ix_items_live_instance_host",
        "ix_items_live_instance_zone",
        "ix_items_labels_path",
        "ix_items_search",
    ):
        op.drop_index(name, table_name="items")
