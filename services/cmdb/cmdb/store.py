"""Tables of the cmdb service's own database, and the change set: the one way items change.

Every write goes through a `ChangeSet`: it locks and updates the item rows, appends one revision
per changed item, records the change set itself and publishes `cmdb-changed` through the outbox,
all in the caller's transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
    bindparam,
    cast,
    func,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from cmdb.domain import Item, ItemRef, Operation, Snapshot, operation_between
from ooda.db import Messaging, new_metadata
from ooda.events import CmdbChanged
from ooda.events.contracts import ItemChange
from ooda.outbox import MAX_PAYLOAD_BYTES, Outbox

metadata = new_metadata()
messaging = Messaging(metadata)

INFRA_GROUP = "cmdb"
"""The event key (`app`) of `cmdb-changed` for items that belong to no application."""

LIVE_INSTANCE = "kind = 'instance' AND NOT deleted AND (data ->> 'status') IN ('starting', 'ready')"
"""SQL selecting the rows of live instances (starting or ready): the predicate of partial indexes.

Queries spell it out (not as bound parameters) so every plan, generic ones too, can use them."""

items = Table(
    "items",
    metadata,
    Column("kind", String(32), primary_key=True),
    Column("id", String(253), primary_key=True),
    Column("data", JSONB, nullable=False),
    Column("labels", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("app_id", String(253), nullable=True),
    Column("version", Integer, nullable=False),
    Column("deleted", Boolean, nullable=False, server_default=text("false")),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_items_labels", "labels", postgresql_using="gin"),  # `?`: selectors' `key`
    Index("ix_items_kind_app_id", "kind", "app_id"),
    Index(
        "ix_items_instance_host",
        text("(data ->> 'host_id')"),
        postgresql_where=text("kind = 'instance'"),
    ),
    # Live instances (the blast radius reads them by zone, host and application).
    *(
        Index(name, text(expression), postgresql_where=text(LIVE_INSTANCE))
        for name, expression in (
            ("ix_items_live_instance_zone", "(data ->> 'zone_id')"),
            ("ix_items_live_instance_host", "(data ->> 'host_id')"),
            ("ix_items_live_instance_app", "app_id"),
        )
    ),
)

item_labels = Table(
    "item_labels",
    metadata,
    Column("kind", String(32), primary_key=True),
    Column("key", Text, primary_key=True),
    Column("value", Text, primary_key=True),
    Column("id", String(253), primary_key=True),
)
"""One row per label of every live item, written by triggers on `items` (migration 0004), never
by the service: a selector's `key=value` reads matching ids from it in id order."""

SEARCH_TEXT = cast(items.c.data, Text)
"""What search matches: the whole snapshot as JSON text (id, fields, labels)."""

# Search (`ILIKE '%text%'` on SEARCH_TEXT) goes through trigrams (the extension pg_trgm).
Index(
    "ix_items_search",
    SEARCH_TEXT.label("search_text"),
    postgresql_using="gin",
    postgresql_ops={"search_text": "gin_trgm_ops"},
)

change_sets = Table(
    "change_sets",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("actor", String(300), nullable=False),
    Column("cause", String(300), nullable=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("reverts", String(64), nullable=True),
    Column("reverted_by", String(64), nullable=True),
)

revisions = Table(
    "revisions",
    metadata,
    Column("sequence", BigInteger, primary_key=True, autoincrement=True),
    Column("change_set_id", String(64), nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    Column("item_id", String(253), nullable=False),
    Column("op", String(16), nullable=False),
    Column("before", JSONB, nullable=True),
    Column("after", JSONB, nullable=True),
    Column("actor", String(300), nullable=False),
    Column("cause", String(300), nullable=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_revisions_item", "kind", "item_id", "sequence"),
)

spec_revisions = Table(
    "spec_revisions",
    metadata,
    Column("app_id", String(253), primary_key=True),
    Column("revision", Integer, primary_key=True),
    Column("spec", JSONB, nullable=False),
    Column("change_set_id", String(64), nullable=False),
    Column("actor", String(300), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

instance_watermarks = Table(
    "instance_watermarks",
    metadata,
    Column("app_id", String(253), primary_key=True),
    Column("sequence", BigInteger, nullable=False),
    Column("event_id", String(200), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)

change_requests = Table(
    "change_requests",
    metadata,
    Column("request_id", String(200), primary_key=True),
    Column("app_id", String(253), nullable=False),
    Column("spec_revision", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("event_id", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)


def snapshot(item: Item) -> Snapshot:
    """The JSON form of an item, as stored and as served."""
    return item.model_dump(mode="json")


def owner_app(data: Snapshot) -> str | None:
    """The application an item belongs to (None for infrastructure: regions to hosts)."""
    kind = data["kind"]
    if kind in ("application", "application_spec"):
        return str(data["id"])
    if kind == "instance":
        return str(data["app_id"])
    if kind == "relation":
        for end in (data["source"], data["target"]):
            if end["kind"] == "application":
                return str(end["id"])
    return None


@dataclass
class StoredItem:
    """One item row: its snapshot, version and whether it is deleted."""

    kind: str
    id: str
    data: Snapshot
    version: int
    deleted: bool
    app_id: str | None

    @property
    def live(self) -> Snapshot | None:
        """The snapshot, or None when the item is deleted."""
        return None if self.deleted else self.data


def _stored(row: Any) -> StoredItem:
    return StoredItem(row.kind, row.id, row.data, row.version, row.deleted, row.app_id)


async def get_item(
    session: AsyncSession, kind: str, item_id: str, *, lock: bool = False
) -> StoredItem | None:
    """An item row (deleted ones too), optionally locked for the rest of the transaction."""
    query = select(items).where(items.c.kind == kind, items.c.id == item_id)
    if lock:
        query = query.with_for_update()
    row = (await session.execute(query)).first()
    return _stored(row) if row else None


async def live_item(session: AsyncSession, kind: str, item_id: str) -> Snapshot | None:
    """An item's snapshot, or None when it does not exist or is deleted."""
    stored = await get_item(session, kind, item_id)
    return stored.live if stored else None


def _among(keys: Iterable[tuple[str, str]]) -> ColumnElement[bool]:
    """The condition `(kind, id)` is one of `keys` (two array parameters, however many keys)."""
    wanted = sorted(set(keys))
    pairs = (
        func.unnest(
            bindparam("kinds", [k for k, _ in wanted], type_=ARRAY(String)),
            bindparam("ids", [i for _, i in wanted], type_=ARRAY(String)),
        )
        .table_valued("kind", "id")
        .render_derived()
    )
    return tuple_(items.c.kind, items.c.id).in_(select(pairs.c.kind, pairs.c.id))


async def get_items(
    session: AsyncSession, keys: Iterable[tuple[str, str]], *, lock: bool = False
) -> dict[tuple[str, str], StoredItem]:
    """Item rows (deleted ones too) by (kind, id), in one query; optionally locked in key order."""
    keys = set(keys)
    if not keys:
        return {}
    query = select(items).where(_among(keys)).order_by(items.c.kind, items.c.id)
    if lock:
        query = query.with_for_update()
    rows = (await session.execute(query)).all()
    return {(row.kind, row.id): _stored(row) for row in rows}


async def live_values(
    session: AsyncSession, keys: Iterable[tuple[str, str]], value: ColumnElement[Any]
) -> dict[tuple[str, str], Any]:
    """One value (a column or an expression) of each live item among `keys`, in one query."""
    keys = set(keys)
    if not keys:
        return {}
    query = select(items.c.kind, items.c.id, value).where(~items.c.deleted, _among(keys))
    return {(kind, item_id): found for kind, item_id, found in (await session.execute(query))}


@dataclass
class ChangeSet:
    """The changes of one API call, import or event: revisions, the change set row, the event."""

    session: AsyncSession
    outbox: Outbox
    actor: str
    cause: str | None
    at: datetime
    reverts: str | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    changes: list[tuple[ItemRef, Operation, str | None]] = field(default_factory=list)
    _started: bool = False

    async def start(self) -> None:
        """Record the change set row (done by the first change, or explicitly)."""
        if not self._started:
            self._started = True
            await self.session.execute(
                change_sets.insert().values(
                    id=self.id, actor=self.actor, cause=self.cause, at=self.at, reverts=self.reverts
                )
            )

    async def put(self, item: Item) -> Operation | None:
        """Create or update an item; None when it already has exactly this content."""
        return await self.write(item.kind, item.id, snapshot(item))

    async def delete(self, kind: str, item_id: str) -> Operation | None:
        """Delete an item; None when it does not exist."""
        return await self.write(kind, item_id, None)

    async def put_many(
        self, batch: Sequence[Item], snapshots: Sequence[Snapshot] | None = None
    ) -> list[Operation | None]:
        """Create or update many items with a few set-based statements; `put`'s result for each.

        The same as calling `put` for each item in turn (rows locked, one revision per changed
        item in the given order), for items that are all distinct. `snapshots`, when given, are
        the items' `snapshot`s, already made.
        """
        afters = list(snapshots) if snapshots is not None else [snapshot(i) for i in batch]
        current = await get_items(self.session, [(i.kind, i.id) for i in batch], lock=True)
        ops: list[Operation | None] = []
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        revision_rows: list[dict[str, Any]] = []
        for item, after in zip(batch, afters, strict=True):
            stored = current.get((item.kind, item.id))
            before = stored.live if stored else None
            op = operation_between(before, after)
            if op is None or before == after:
                ops.append(None)
                continue
            ops.append(op)
            app_id = owner_app(after)
            values = {
                "data": after,
                "labels": after.get("labels", {}),
                "app_id": app_id,
                "deleted": False,
                "updated_at": self.at,
            }
            if stored is None:
                inserts.append({"kind": item.kind, "id": item.id, "version": 1, **values})
            else:
                updates.append({"b_kind": item.kind, "b_id": item.id, **values})
            revision_rows.append(
                {
                    "change_set_id": self.id,
                    "kind": item.kind,
                    "item_id": item.id,
                    "op": op,
                    "before": before,
                    "after": after,
                    "actor": self.actor,
                    "cause": self.cause,
                    "at": self.at,
                }
            )
            # Both fields were validated with the item: no need to validate the reference again.
            ref = ItemRef.model_construct(kind=item.kind, id=item.id)
            self.changes.append((ref, op, app_id))
        if not revision_rows:
            return ops
        await self.start()
        if inserts:
            await self.session.execute(items.insert(), inserts)
        if updates:
            await self.session.execute(
                update(items)
                .where(items.c.kind == bindparam("b_kind"), items.c.id == bindparam("b_id"))
                .values(version=items.c.version + 1),
                updates,
            )
        await self.session.execute(revisions.insert(), revision_rows)
        return ops

    async def write(self, kind: str, item_id: str, after: Snapshot | None) -> Operation | None:
        """Move an item to `after` (None: deleted), recording a revision if anything changed."""
        current = await get_item(self.session, kind, item_id, lock=True)
        before = current.live if current else None
        op = operation_between(before, after)
        if op is None or before == after:
            return None
        await self.start()
        data = after if after is not None else before
        assert data is not None
        app_id = owner_app(data)
        values = {
            "data": data,
            "labels": data.get("labels", {}),
            "app_id": app_id,
            "deleted": after is None,
            "updated_at": self.at,
        }
        if current is None:
            await self.session.execute(
                items.insert().values(kind=kind, id=item_id, version=1, **values)
            )
        else:
            await self.session.execute(
                update(items)
                .where(items.c.kind == kind, items.c.id == item_id)
                .values(version=items.c.version + 1, **values)
            )
        await self.session.execute(
            revisions.insert().values(
                change_set_id=self.id,
                kind=kind,
                item_id=item_id,
                op=op,
                before=before,
                after=after,
                actor=self.actor,
                cause=self.cause,
                at=self.at,
            )
        )
        self.changes.append((ItemRef.model_validate({"kind": kind, "id": item_id}), op, app_id))
        return op

    def publish(self) -> None:
        """Announce the change set: one `cmdb-changed` per application touched (if any change),
        in numbered parts when its items are too many for one record."""
        groups: dict[str, list[ItemChange]] = {}
        for ref, op, app_id in self.changes:
            groups.setdefault(app_id or INFRA_GROUP, []).append(
                ItemChange(type=ref.kind, id=ref.id, op=op)
            )
        for app, changed in sorted(groups.items()):
            event = CmdbChanged(
                app=app, change_set_id=self.id, actor=self.actor, cause=self.cause, items=changed
            )
            for part in event.split(MAX_PAYLOAD_BYTES):  # a large import: several events
                self.outbox.add(self.session, part)


async def record_change_request(
    session: AsyncSession,
    *,
    request_id: str,
    app_id: str,
    spec_revision: int,
    kind: str,
    event_id: str,
    reason: str,
    at: datetime,
) -> bool:
    """Remember a change request under its idempotency key; False when it was already made."""
    inserted = await session.scalar(
        insert(change_requests)
        .values(
            request_id=request_id,
            app_id=app_id,
            spec_revision=spec_revision,
            kind=kind,
            event_id=event_id,
            reason=reason,
            at=at,
        )
        .on_conflict_do_nothing(index_elements=["request_id"])
        .returning(change_requests.c.request_id)
    )
    return inserted is not None


async def latest_spec_revision(session: AsyncSession, app_id: str) -> int:
    """The highest spec revision recorded for an application (0 when none)."""
    value = await session.scalar(
        select(func.max(spec_revisions.c.revision)).where(spec_revisions.c.app_id == app_id)
    )
    return int(value or 0)
