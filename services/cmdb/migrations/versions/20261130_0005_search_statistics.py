"""Finer statistics of the searched text, so the planner tells a rare text from a common one.

A search (`data::text ILIKE '%text%'`, in kind and id order, a page of 100) has two plans:
the trigram index's matches sorted, or the primary key walked in order until a page is found.
Which is cheaper depends on how many items hold the text, which the planner reads off a sample
of the texts. With the default 100-entry sample a rare text (49 of a million items) was estimated
at 1% whenever one sampled item held it, and the walk through every item took 3 s; with 1,000
entries such a text is estimated at most at 0.1%, and the index is chosen.

Revision ID: 20261130_0005
Revises: 20261130_0004
Create Date: 2026-11-30
"""

from alembic import op

revision = "20261130_0005"
down_revision = "20261130_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER INDEX ix_items_search ALTER COLUMN 1 SET STATISTICS 1000")
    op.execute("ANALYZE items")


def downgrade() -> None:
    op.execute("ALTER INDEX ix_items_search ALTER COLUMN 1 SET STATISTICS -1")
