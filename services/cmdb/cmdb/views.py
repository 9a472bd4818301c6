"""Read-side queries: lists with filters, selectors, sorting and cursors; history; topology; SD."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, get_origin
from typing import cast as cast_to

import asyncpg
from pydantic import BaseModel
from sqlalchemy import (
    Numeric,
    String,
    Text,
    and_,
    any_,
    bindparam,
    cast,
    false,
    not_,
    or_,
    select,
    tuple_,
)
from sqlalchemy import text as sql
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement

from cmdb.domain import (
    Application,
    ApplicationSpec,
    BlastRadius,
    FailureScope,
    Host,
    Instance,
    Operator,
    Placement,
    Pool,
    Region,
    Relation,
    ResourceRequest,
    Selector,
    Zone,
    app_impacts,
    dependents,
    parse_item,
    state_as_of,
)
from cmdb.errors import BadRequest, NotFound
from cmdb.handlers import to_revision
from cmdb.schemas import ChangeSetOut, HistoryOut, RevisionOut
from cmdb.store import (
    LIVE_INSTANCE,
    SEARCH_TEXT,
    Snapshot,
    change_sets,
    item_labels,
    items,
    revisions,
    spec_revisions,
)

MODELS: dict[str, type[BaseModel]] = {
    "region": Region,
    "zone": Zone,
    "pool": Pool,
    "host": Host,
    "application": Application,
    "application_spec": ApplicationSpec,
    "instance": Instance,
    "relation": Relation,
}
ALIASES = {"instance": {"app": "app_id", "host": "host_id", "zone": "zone_id"}}
_PROMETHEUS_LABEL = re.compile(r"[^a-zA-Z0-9_]")


def _scalar_fields(kind: str) -> dict[str, bool]:
    """Fields of a kind that filters and sorting may use, and whether each is numeric."""
    out = {}
    for name, info in MODELS[kind].model_fields.items():
        annotation = info.annotation
        if annotation in (int, float):
            out[name] = True
        elif annotation in (str, bool, datetime) or get_origin(annotation) is Literal:
            out[name] = False
    return out


def selector_condition(kind: str, selector: Selector) -> ColumnElement[bool]:
    """The SQL condition on items of `kind` that a label selector means.

    `key=value` and `key in (a,b)` read the ids carrying the label from the label index
    (`item_labels`, in id order for one value); other requirements test the labels column.
    """
    conditions: list[ColumnElement[bool]] = []
    labels = items.c.labels
    for req in selector.requirements:
        match req.operator:
            case Operator.EXISTS:
                conditions.append(labels.has_key(req.key))
            case Operator.DOES_NOT_EXIST:
                conditions.append(not_(labels.has_key(req.key)))
            case Operator.EQUALS | Operator.IN:
                conditions.append(_carrying(kind, req.key, req.values))
            case Operator.NOT_EQUALS:
                conditions.append(not_(labels.contains({req.key: req.values[0]})))
            case Operator.NOT_IN:
                value = labels[req.key].astext
                conditions.append(or_(value.is_(None), value.not_in(req.values)))
    return and_(true_if_empty(), *conditions)


def _carrying(kind: str, key: str, values: Sequence[str]) -> ColumnElement[bool]:
    """Items of `kind` labelled `key` with one of `values`, by the label index (one value: its
    ids in id order, a range of its primary key)."""
    value = item_labels.c.value
    ids = select(item_labels.c.id).where(
        item_labels.c.kind == kind,
        item_labels.c.key == key,
        value == values[0] if len(values) == 1 else value.in_(values),
    )
    return items.c.id.in_(ids)


def true_if_empty() -> ColumnElement[bool]:
    """A condition that always holds (the neutral element of a conjunction)."""
    return not_(false())


def _sort_expression(kind: str, field: str) -> ColumnElement[Any]:
    fields = _scalar_fields(kind)
    if field not in fields:
        raise BadRequest(
            f"cannot sort {kind} by {field!r}; sortable fields: {', '.join(sorted(fields))}"
        )
    if field == "id":
        return items.c.id
    text = items.c.data[field].astext
    if fields[field]:
        return cast(text, Numeric)
    return cast(text, String)


def encode_cursor(sort: str, value: Any, item_id: str) -> str:
    """An opaque cursor pointing after one item in one sort order."""
    raw = json.dumps([sort, value, item_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str, *, numeric: bool) -> tuple[Any, str]:
    """The position a cursor points after; BadRequest when it is not one of ours.

    The position must be one `encode_cursor` could have made for the sort: an item id and a
    value of the sort field's type (a finite number for a `numeric` field, else text or null),
    so a crafted cursor never reaches the database with a value it cannot compare.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        cursor_sort, value, item_id = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"invalid cursor {cursor!r}") from exc
    if cursor_sort != sort:
        raise BadRequest(f"the cursor was made for sort {cursor_sort!r}, not {sort!r}")
    if not _fits_sort(value, numeric) or not _fits_text(item_id, 253):
        raise BadRequest(f"invalid cursor {cursor!r}: not a position in sort {sort!r}")
    return value, item_id


def _fits_text(value: object, max_length: int) -> bool:
    return isinstance(value, str) and len(value) <= max_length and "\x00" not in value


def _fits_sort(value: object, numeric: bool) -> bool:
    if value is None:
        return True
    if numeric:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return abs(value) < 1e300  # also False for NaN and infinities
    return _fits_text(value, 4096)


def _page_query(
    kind: str,
    filters: Mapping[str, str],
    selector: Selector,
    sort: str,
    limit: int,
    cursor: str | None,
    *columns: ColumnElement[Any],
) -> Select[Any]:
    """The query of a page of `list_items`: one row more than the page, to tell if one follows."""
    fields = _scalar_fields(kind)
    aliases = ALIASES.get(kind, {})
    query = select(*columns).where(
        items.c.kind == kind, ~items.c.deleted, selector_condition(kind, selector)
    )
    for name, value in filters.items():
        field = aliases.get(name, name)
        if field not in fields:
            raise BadRequest(
                f"cannot filter {kind} by {name!r}; fields: {', '.join(sorted(fields))}"
            )
        if field == "id":
            query = query.where(items.c.id == value)
        elif field == "app_id" and kind == "instance":
            query = query.where(items.c.app_id == value)
        else:
            query = query.where(items.c.data[field].astext == value)
    descending = sort.startswith("-")
    expression = _sort_expression(kind, sort.removeprefix("-"))
    if cursor:
        value, after_id = decode_cursor(cursor, sort, numeric=fields[sort.removeprefix("-")])
        position = tuple_(expression, items.c.id)
        bound = tuple_(value, after_id)
        query = query.where(position < bound if descending else position > bound)
    if descending:
        query = query.order_by(expression.desc(), items.c.id.desc())
    else:
        query = query.order_by(expression, items.c.id)
    return query.limit(limit + 1)


def _cursor_after(sort: str, last: Snapshot) -> str:
    field = sort.removeprefix("-")
    return encode_cursor(sort, last["id"] if field == "id" else last.get(field), last["id"])


async def list_items(
    session: AsyncSession,
    kind: str,
    *,
    filters: Mapping[str, str],
    selector: Selector,
    sort: str = "id",
    limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[Snapshot], str | None]:
    """One page of live items of a kind, filtered by fields and labels, in a stable order."""
    query = _page_query(kind, filters, selector, sort, limit, cursor, items.c.data)
    rows = list(await session.scalars(query))
    page = rows[:limit]
    return page, _cursor_after(sort, page[-1]) if len(rows) > limit else None


async def list_items_json(
    session: AsyncSession,
    kind: str,
    *,
    filters: Mapping[str, str],
    selector: Selector,
    sort: str = "id",
    limit: int = 100,
    cursor: str | None = None,
) -> str:
    """`list_items` as the JSON of an `ItemPage`, made of the items' stored JSON text unparsed."""
    # Only the page's rows are turned into text, after the sort (not every row that matched).
    key = _sort_expression(kind, sort.removeprefix("-")).label("sort_key")
    page_rows = _page_query(
        kind, filters, selector, sort, limit, cursor, items.c.id, items.c.data, key
    ).subquery()
    order = (page_rows.c.sort_key, page_rows.c.id)
    query = select(cast(page_rows.c.data, Text)).order_by(
        *(c.desc() for c in order) if sort.startswith("-") else order
    )
    rows = list(await session.scalars(query))
    page = rows[:limit]
    after = _cursor_after(sort, json.loads(page[-1])) if len(rows) > limit else None
    return '{"items":[' + ",".join(page) + '],"next":' + json.dumps(after) + "}"


_GET_LIVE = select(items.c.data).where(
    items.c.kind == bindparam("kind"), items.c.id == bindparam("id"), ~items.c.deleted
)


_GET_LIVE_JSON = (
    select(SEARCH_TEXT)
    .where(items.c.kind == bindparam("kind"), items.c.id == bindparam("id"), ~items.c.deleted)
    .compile(dialect=asyncpg_dialect())
)
"""Compiled once to the driver's SQL: the hottest read runs it on the driver's connection, without
SQLAlchemy's execution around it (a tenth of a millisecond of a get's two)."""
_GET_LIVE_JSON_SQL = str(_GET_LIVE_JSON)  # parameters $1 kind, $2 id


async def live_json(conn: AsyncConnection, kind: str, item_id: str) -> str:
    """A live item as the JSON text the database holds (what `get_live` gives, unparsed).

    The query goes to the driver (asyncpg) directly: its errors are the driver's, which every
    service answers as it does SQLAlchemy's (503 while the database is down).
    """
    driver = cast_to(asyncpg.Connection, (await conn.get_raw_connection()).driver_connection)
    text = await driver.fetchval(_GET_LIVE_JSON_SQL, kind, item_id)
    if text is None:
        raise NotFound(f"{kind} {item_id!r} does not exist")
    return str(text)


async def get_live(session: AsyncSession, kind: str, item_id: str) -> Snapshot:
    """A live item, or NotFound."""
    data = await session.scalar(_GET_LIVE, {"kind": kind, "id": item_id})
    if data is None:
        raise NotFound(f"{kind} {item_id!r} does not exist")
    return dict(data)


async def _live_of_kind(session: AsyncSession, kind: str, *where: Any) -> list[Snapshot]:
    rows = await session.scalars(
        select(items.c.data).where(items.c.kind == kind, ~items.c.deleted, *where)
    )
    return list(rows)


async def with_allocation(session: AsyncSession, hosts: Sequence[Snapshot]) -> list[Snapshot]:
    """Hosts with `allocated {cpu_millis, memory_mib}`: what their live instances reserve."""
    ids = [h["id"] for h in hosts]
    instances = await _live_of_kind(
        session,
        "instance",
        items.c.data["host_id"].astext.in_(ids),
        items.c.data["status"].astext.in_(["starting", "ready"]),
    )
    apps = sorted({i["app_id"] for i in instances})
    specs = {
        s["id"]: ResourceRequest.model_validate(s["resources"])
        for s in await _live_of_kind(session, "application_spec", items.c.id.in_(apps))
    }
    allocated = {h: {"cpu_millis": 0, "memory_mib": 0} for h in ids}
    for instance in instances:
        resources = specs.get(instance["app_id"], ResourceRequest())
        allocated[instance["host_id"]]["cpu_millis"] += resources.cpu_millis
        allocated[instance["host_id"]]["memory_mib"] += resources.memory_mib
    return [{**h, "allocated": allocated[h["id"]]} for h in hosts]


async def history(
    session: AsyncSession, kind: str, item_id: str, as_of: datetime | None
) -> HistoryOut:
    """An item's revisions, oldest first, and its state now or as of a past time."""
    query = (
        select(revisions)
        .where(revisions.c.kind == kind, revisions.c.item_id == item_id)
        .order_by(revisions.c.sequence)
    )
    if as_of is not None:
        query = query.where(revisions.c.at <= as_of)
    rows = (await session.execute(query)).all()
    if not rows and as_of is None:
        raise NotFound(f"{kind} {item_id!r} has no history")
    domain = [to_revision(r) for r in rows]
    state = None
    if domain:
        latest_at = as_of or max(r.at for r in domain)
        state = state_as_of(domain, domain[0].item, latest_at)
    return HistoryOut(
        kind=kind,
        id=item_id,
        as_of=as_of,
        state=state,
        revisions=[_revision_out(r) for r in rows],
    )


def _revision_out(row: Any) -> RevisionOut:
    return RevisionOut(
        sequence=row.sequence,
        change_set_id=row.change_set_id,
        kind=row.kind,
        id=row.item_id,
        op=row.op,
        before=row.before,
        after=row.after,
        actor=row.actor,
        cause=row.cause,
        at=row.at,
    )


async def change_set(session: AsyncSession, change_set_id: str) -> ChangeSetOut:
    """One change set with its revisions."""
    row = (
        await session.execute(select(change_sets).where(change_sets.c.id == change_set_id))
    ).first()
    if row is None:
        raise NotFound(f"change set {change_set_id!r} does not exist")
    revs = (
        await session.execute(
            select(revisions)
            .where(revisions.c.change_set_id == change_set_id)
            .order_by(revisions.c.sequence)
        )
    ).all()
    return ChangeSetOut(
        id=row.id,
        actor=row.actor,
        cause=row.cause,
        at=row.at,
        reverts=row.reverts,
        reverted_by=row.reverted_by,
        revisions=[_revision_out(r) for r in revs],
    )


async def search(
    session: AsyncSession, text: str, kinds: Sequence[str], limit: int
) -> list[Snapshot]:
    """Live items of any kind whose id, fields or labels contain the text (case-insensitive)."""
    pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    # The pattern goes into the statement as a literal, so each search is planned for its own
    # text (with the statistics of migration 0005), never by a prepared statement's generic plan:
    # one that assumes many matches walks the primary key in order, through every item when the
    # text is rare (3 s at a million items), where the trigram index finds them in milliseconds.
    query = (
        select(items.c.data)
        .where(
            ~items.c.deleted, SEARCH_TEXT.ilike(bindparam("pattern", pattern, literal_execute=True))
        )
        .order_by(items.c.kind, items.c.id)
        .limit(limit)
    )
    if kinds:
        query = query.where(items.c.kind.in_(kinds))
    return list(await session.scalars(query))


async def app_dependents(session: AsyncSession, app_id: str) -> list[dict[str, Any]]:
    """Applications that depend on `app_id`, directly (distance 1) or through others."""
    await get_live(session, "application", app_id)
    relations = [
        r
        for data in await _live_of_kind(
            session, "relation", items.c.data["type"].astext == "depends_on"
        )
        if isinstance(r := parse_item(data), Relation)
    ]
    found = dependents(app_id, relations)
    return [{"app": a, "distance": d} for a, d in sorted(found.items(), key=lambda x: (x[1], x[0]))]


async def host_instances(session: AsyncSession, host_id: str) -> list[Snapshot]:
    """What runs on a host, ordered by application and instance id."""
    await get_live(session, "host", host_id)
    found = await _live_of_kind(session, "instance", items.c.data["host_id"].astext == host_id)
    return sorted(found, key=lambda i: (i["app_id"], i["id"]))


_BLAST_HOSTS = sql(
    """
    SELECT coalesce(array_agg(id) FILTER (WHERE lost), '{}') AS lost,
           coalesce(sum(cpu_millis) FILTER (WHERE lost), 0) AS cpu_millis_lost,
           coalesce(sum(cpu_millis) FILTER (WHERE NOT lost AND up), 0) AS cpu_millis_left,
           coalesce(sum(memory_mib) FILTER (WHERE lost), 0) AS memory_mib_lost,
           coalesce(sum(memory_mib) FILTER (WHERE NOT lost AND up), 0) AS memory_mib_left
    FROM (
        SELECT id, (data ->> :field) = :scope AS lost, (data ->> 'status') = 'up' AS up,
               (data ->> 'cpu_millis')::bigint AS cpu_millis,
               (data ->> 'memory_mib')::bigint AS memory_mib
        FROM items WHERE kind = 'host' AND NOT deleted
    ) AS hosts
    """
)

_BLAST_INSTANCES = sql(
    f"""
    SELECT hit.app_id, live.host_id, live.zone_id
    FROM (
        SELECT DISTINCT app_id FROM items
        WHERE {LIVE_INSTANCE}
          AND ((data ->> 'host_id') = ANY(:hosts) OR (data ->> 'zone_id') = :zone)
    ) AS hit
    CROSS JOIN LATERAL (
        SELECT data ->> 'host_id' AS host_id, data ->> 'zone_id' AS zone_id FROM items
        WHERE {LIVE_INSTANCE} AND app_id = hit.app_id
        OFFSET 0  -- kept a subquery: an index probe per application hit, not a scan of all
    ) AS live
    """
).bindparams(bindparam("hosts", type_=ARRAY(String)), bindparam("zone", type_=String))


async def blast(session: AsyncSession, scope: FailureScope) -> dict[str, Any]:
    """The blast radius of losing a zone or pool: `domain.blast_radius`, read the short way.

    The same answer as the domain's function over every live host, live instance and spec, but
    the database sums the hosts and returns only the live instances of the applications hit,
    three columns each.
    """
    await get_live(session, scope.kind, scope.id)
    # The planner's cost for these reads is high enough to start JIT compilation, which costs
    # more than the reads themselves.
    await session.execute(sql("SET LOCAL jit = off"))
    hosts = (
        await session.execute(_BLAST_HOSTS, {"field": f"{scope.kind}_id", "scope": scope.id})
    ).one()
    lost_hosts = set(hosts.lost)
    zone = scope.id if scope.kind == "zone" else None
    rows = await session.execute(_BLAST_INSTANCES, {"hosts": sorted(lost_hosts), "zone": zone})
    live = [Placement(*row) for row in rows]
    hit = bindparam("hit", sorted({p.app_id for p in live}), type_=ARRAY(String))
    specs = {
        s["id"]: ApplicationSpec.model_validate(s)
        for s in await _live_of_kind(session, "application_spec", items.c.id == any_(hit))
    }
    radius = BlastRadius(
        scope=scope,
        hosts_lost=tuple(sorted(lost_hosts)),
        cpu_millis_lost=int(hosts.cpu_millis_lost),
        cpu_millis_left=int(hosts.cpu_millis_left),
        memory_mib_lost=int(hosts.memory_mib_lost),
        memory_mib_left=int(hosts.memory_mib_left),
        applications=app_impacts(scope, lost_hosts, live, specs),
    )
    return radius.model_dump(mode="json")


async def prometheus_targets(session: AsyncSession) -> list[dict[str, Any]]:
    """Ready instances as Prometheus HTTP SD target groups, with their labels."""
    ready = await _live_of_kind(session, "instance", items.c.data["status"].astext == "ready")
    groups = []
    for instance in sorted(ready, key=lambda i: (i["app_id"], i["id"])):
        labels = {
            _PROMETHEUS_LABEL.sub("_", key): value
            for key, value in instance.get("labels", {}).items()
        }
        labels |= {
            "app": instance["app_id"],
            "instance": instance["id"],
            "zone": instance["zone_id"],
            "host": instance["host_id"],
            "version": instance["version"],
        }
        groups.append({"targets": [instance["endpoint"]], "labels": labels})
    return groups


async def spec_history(session: AsyncSession, app_id: str) -> list[dict[str, Any]]:
    """Every spec revision of an application since it was last created (or brought back by a
    revert), newest first.

    An application deleted and created again under the same id is a new one: the old one's
    revisions stay in the item history (`/history/application_spec/{id}`), not in its list. Its
    revisions still count on from the old ones, so their change requests' keys are new.
    """
    await get_live(session, "application", app_id)
    created = (
        select(revisions.c.at)
        .where(
            revisions.c.kind == "application",
            revisions.c.item_id == app_id,
            revisions.c.op == "create",
        )
        .order_by(revisions.c.sequence.desc())
        .limit(1)
        .scalar_subquery()
    )
    rows = (
        await session.execute(
            select(spec_revisions)
            .where(spec_revisions.c.app_id == app_id, spec_revisions.c.at >= created)
            .order_by(spec_revisions.c.revision.desc())
        )
    ).all()
    return [
        {
            "revision": r.revision,
            "spec": r.spec,
            "actor": r.actor,
            "at": r.at.isoformat(),
            "change_set_id": r.change_set_id,
        }
        for r in rows
    ]
