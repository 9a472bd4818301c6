"""The label index: one row per label of every live item, kept by triggers on `items`.

A selector's `key=value` reads the ids of the items carrying that label from `item_labels`, in id
order: a page of 100 by `cell=417` reads ~100 index entries and ~100 items, however many items
carry the label, instead of every item that matches (a bitmap scan of ~1,000 heap pages for a
label on 0.1% of a million items). The planner also estimates one label value from plain column
statistics, where its estimate of a JSON containment was off by 10x either way and then chose a
scan of the whole primary key in order (40 ms).

It replaces the `jsonb_path_ops` index of `labels @> {key: value}`, which no query uses now.
Statement-level triggers with transition tables keep it set-based: an import of 5,000 items
writes their labels in one INSERT; an update that leaves labels (and deletion) alone writes none.

Revision ID: 20261130_0004
Revises: 20261130_0003
Create Date: 2026-11-30
"""

from alembic import op

revision = "20261130_0004"
down_revision = "20261130_0003"
branch_labels = None
depends_on = None

FUNCTIONS = {
    "items_labels_inserted": """
        INSERT INTO item_labels (kind, key, value, id)
        SELECT n.kind, l.key, l.value, n.id
        FROM new_rows n CROSS JOIN LATERAL jsonb_each_text(n.labels) AS l
        WHERE NOT n.deleted;
    """,
    "items_labels_updated": """
        DELETE FROM item_labels AS il
        USING old_rows o JOIN new_rows n ON n.kind = o.kind AND n.id = o.id
        WHERE il.kind = o.kind AND il.id = o.id AND NOT o.deleted
          AND (n.deleted OR n.labels IS DISTINCT FROM o.labels);
        INSERT INTO item_labels (kind, key, value, id)
        SELECT n.kind, l.key, l.value, n.id
        FROM old_rows o JOIN new_rows n ON n.kind = o.kind AND n.id = o.id
             CROSS JOIN LATERAL jsonb_each_text(n.labels) AS l
        WHERE NOT n.deleted AND (o.deleted OR n.labels IS DISTINCT FROM o.labels);
    """,
    "items_labels_deleted": """
        DELETE FROM item_labels AS il USING old_rows o
        WHERE il.kind = o.kind AND il.id = o.id;
    """,
}
TRANSITIONS = {
    "items_labels_inserted": ("INSERT", "NEW TABLE AS new_rows"),
    "items_labels_updated": ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    "items_labels_deleted": ("DELETE", "OLD TABLE AS old_rows"),
}


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE item_labels (
            kind varchar(32) NOT NULL,
            key text NOT NULL,
            value text NOT NULL,
            id varchar(253) NOT NULL,
            CONSTRAINT pk_item_labels PRIMARY KEY (kind, key, value, id)
        )
        """
    )
    # Item ids of one label in id order: `WHERE kind = ? AND key = ? AND value = ? ORDER BY id`
    # is a range of the primary key, read without its table (index-only).
    for name, body in FUNCTIONS.items():
        op.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$"
            f" BEGIN {body} RETURN NULL; END $$"
        )
        event, referencing = TRANSITIONS[name]
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON items REFERENCING {referencing}"
            f" FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
        )
    op.execute(
        """
        INSERT INTO item_labels (kind, key, value, id)
        SELECT i.kind, l.key, l.value, i.id
        FROM items i CROSS JOIN LATERAL jsonb_each_text(i.labels) AS l
        WHERE NOT i.deleted
        """
    )
    # Selectors no longer test `labels @> {key: value}`: its index is only written.
    op.drop_index("ix_items_labels_path", table_name="items")


def downgrade() -> None:
    op.create_index(
        "ix_items_labels_path",
        "items",
        ["labels"],
        postgresql_using="gin",
        postgresql_ops={"labels": "jsonb_path_ops"},
    )
    for name in FUNCTIONS:
        op.execute(f"DROP TRIGGER {name} ON items")
        op.execute(f"DROP FUNCTION {name}()")
    op.execute("DROP TABLE item_labels")
