"""Use cases of the cmdb, one async function each; the caller owns the transaction."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects.postgresql import distinct_on, insert
from sqlalchemy.ext.asyncio import AsyncSession

from cmdb.domain import (
    MAX_SEQUENCE_GAP,
    ApplicationSpec,
    AttributeSchema,
    Instance,
    InstanceSetReport,
    Item,
    ItemRef,
    RevertConflictError,
    Revision,
    StaleInstanceSet,
    Watermark,
    apply_instance_set,
    attribute_problems,
    detect_drift,
    idempotency_key,
    parse_item,
    plan_revert,
    references,
)
from cmdb.errors import Conflict, Forbidden, Invalid, NotFound, problem
from cmdb.schemas import INFRA_KINDS
from cmdb.store import (
    ChangeSet,
    Snapshot,
    change_sets,
    get_item,
    instance_watermarks,
    items,
    latest_spec_revision,
    live_item,
    live_values,
    owner_app,
    record_change_request,
    revisions,
    snapshot,
    spec_revisions,
)
from ooda.auth import Actor
from ooda.consumer import PermanentError
from ooda.events import ChangeRequested, DeployDone, Event
from ooda.events.contracts import ChangeTarget
from ooda.outbox import Outbox

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""deploy-done is ordered by its per-application sequence alone (docs/interfaces.md)."""

_REFERENCE_FIELD = {
    "region": "region_id",
    "zone": "zone_id",
    "pool": "pool_id",
    "host": "host_id",
    "application": "app_id",
}
_INSTANCE_STATUS = {"starting": "starting", "ready": "ready", "stopping": "draining"}
_EVENT_ID_MAX_LENGTH = 200  # instance_watermarks.event_id (the cause column holds 300)
_EVENT_SOURCE_MAX_LENGTH = 300 - len("event:")  # the actor `event:<source>`


# --- validation and authorisation -----------------------------------------------------------


def validate_item(
    kind: str,
    item_id: str,
    body: object,
    schemas: Mapping[str, AttributeSchema],
    loc: tuple[str | int, ...] = ("body",),
) -> Item:
    """The item a request body describes, or Invalid with the path of every bad field."""
    if not isinstance(body, dict):
        raise Invalid([problem(loc, "expected a JSON object")])
    problems = [
        problem((*loc, name), f"must be {expected!r} (from the URL), got {body[name]!r}")
        for name, expected in (("kind", kind), ("id", item_id))
        if name in body and body[name] != expected
    ]
    problems += [problem((*loc, *p), "must not hold a NUL character") for p in _nul_paths(body)]
    if problems:
        raise Invalid(problems)
    try:
        item = parse_item({**body, "kind": kind, "id": item_id})
    except ValidationError as exc:
        raise Invalid([_problem_of(e["loc"][1:], e["msg"], loc) for e in exc.errors()]) from exc
    bad_attributes = attribute_problems(item, schemas)
    if bad_attributes:
        raise Invalid([problem((*loc, *p.path), p.message) for p in bad_attributes])
    return item


def _nul_paths(value: object, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Where a JSON value holds a NUL character (in a string or a key): PostgreSQL refuses it."""
    if isinstance(value, str):
        return [path] if "\x00" in value else []
    if isinstance(value, dict):
        return [
            p
            for key, inner in value.items()
            for p in ([(*path, key)] if "\x00" in str(key) else _nul_paths(inner, (*path, key)))
        ]
    if isinstance(value, list):
        return [p for index, inner in enumerate(value) for p in _nul_paths(inner, (*path, index))]
    return []


def _problem_of(
    field: tuple[str | int, ...], msg: str, loc: tuple[str | int, ...]
) -> dict[str, Any]:
    if field == ("id",) and loc == ("body",):
        return problem(("path", "id"), msg)  # the id of a PUT comes from the URL
    return problem((*loc, *field), msg)


@dataclass
class Owners:
    """What decides who owns a batch of rows, read in two queries: the application of each
    instance a relation starts from, and the owner team of each application.

    Every write is authorised through it: one item (`authorize`) or a whole import at once.
    """

    instance_apps: dict[str, str | None]
    owner_teams: dict[str, str | None]

    @staticmethod
    def _instance_of(data: Snapshot) -> str | None:
        if data["kind"] == "relation" and data["source"]["kind"] == "instance":
            return str(data["source"]["id"])
        return None

    @classmethod
    async def load(cls, session: AsyncSession, rows: list[Snapshot]) -> Owners:
        """Read the instances and applications that own `rows` (item snapshots)."""
        owned = [d for d in rows if d["kind"] not in INFRA_KINDS and d["kind"] != "application"]
        wanted = {
            ("instance", i)
            for d in owned
            if owner_app(d) is None and (i := cls._instance_of(d)) is not None
        }
        found = await live_values(session, wanted, items.c.app_id)
        owners = cls({key[1]: app for key, app in found.items()}, {})
        apps = {("application", a) for d in owned if (a := owners._app_of(d)) is not None}
        teams = await live_values(session, apps, items.c.data["owner_team"].astext)
        owners.owner_teams = {key[1]: team for key, team in teams.items()}
        return owners

    def _app_of(self, data: Snapshot) -> str | None:
        app_id = owner_app(data)
        if app_id is None and (instance_id := self._instance_of(data)) is not None:
            app_id = self.instance_apps.get(instance_id)
        return app_id

    def teams(self, data: Snapshot) -> set[str] | None:
        """The teams that own an item (None: infrastructure, owned by the platform team)."""
        if data["kind"] in INFRA_KINDS:
            return None
        if data["kind"] == "application":
            return {str(data["owner_team"])}
        app_id = self._app_of(data)
        if app_id is None:
            return None
        if app_id not in self.owner_teams:
            return set()
        return {str(self.owner_teams[app_id])}

    def refusal(self, actor: Actor, after: Snapshot | None, before: Snapshot | None) -> str | None:
        """Why the actor may not change the item from `before` to `after` (None: it may)."""
        for data in (before, after):
            if data is None:
                continue
            teams = self.teams(data)
            ref = f"{data['kind']} {data['id']!r}"
            if teams is None:
                if not actor.has("infra"):
                    return f"actor {actor.subject!r} needs scope 'infra' or 'admin' for {ref}"
                continue
            if not teams and not actor.has("admin"):  # its application is gone: admins only
                return f"actor {actor.subject!r} needs scope 'admin' for {ref}"
            for team in sorted(teams):
                if not actor.has(f"team:{team}"):
                    return f"actor {actor.subject!r} needs scope 'team:{team}' or 'admin' for {ref}"
        return None


async def authorize(
    session: AsyncSession, actor: Actor, after: Snapshot | None, before: Snapshot | None
) -> None:
    """Raise Forbidden unless the actor may change the item from `before` to `after`."""
    owners = await Owners.load(session, [d for d in (before, after) if d is not None])
    refused = owners.refusal(actor, after, before)
    if refused is not None:
        raise Forbidden(refused)


def _reference_loc(item: Item, ref: ItemRef, index: int) -> str:
    if item.kind == "relation":
        return "source" if index == 0 else "target"
    if item.kind == "application_spec":
        return "id"
    return _REFERENCE_FIELD.get(ref.kind, ref.kind)


async def missing_references(
    session: AsyncSession,
    item: Item,
    pending: frozenset[tuple[str, str]] | set[tuple[str, str]] = frozenset(),
    loc: tuple[str | int, ...] = ("body",),
) -> list[dict[str, Any]]:
    """A problem for every item this item refers to that does not exist."""
    problems = []
    for index, ref in enumerate(references(item)):
        if (ref.kind, ref.id) in pending:
            continue
        if await live_item(session, ref.kind, ref.id) is None:
            problems.append(
                problem(
                    (*loc, _reference_loc(item, ref, index)),
                    f"{ref.kind} {ref.id!r} does not exist",
                )
            )
    return problems


async def referrers(session: AsyncSession, kind: str, item_id: str) -> list[str]:
    """Live items that refer to an item (an application's own spec does not count)."""
    conditions = [
        items.c.data.contains({"kind": "relation", end: {"kind": kind, "id": item_id}})
        for end in ("source", "target")
    ]
    if kind in _REFERENCE_FIELD:
        conditions.append(items.c.data.contains({_REFERENCE_FIELD[kind]: item_id}))
    query = (
        select(items.c.kind, items.c.id)
        .where(
            ~items.c.deleted,
            items.c.kind != "application_spec",
            ~and_(items.c.kind == kind, items.c.id == item_id),
            or_(*conditions),
        )
        .order_by(items.c.kind, items.c.id)
        .limit(6)
    )
    return [f"{r.kind} {r.id!r}" for r in (await session.execute(query)).all()]


async def foreign_relations(session: AsyncSession, app_id: str, team: str) -> list[str]:
    """The live relations to or from an application that another team owns (an application's
    relation belongs to the team of its source application).

    Deleting the application deletes them with it, in its change set: another team's
    `depends_on` says something about that team's application, which the owner cannot change
    and which must not stop the owner deleting its own; left in place it would point at
    nothing, or at whatever application takes the id next. Their history keeps who deleted them
    and when, and their team hears of it through `cmdb-changed` (keyed by its application).
    Relations of the owner's own team still block the delete: the owner moves those first.
    """
    rows = list(
        await session.scalars(
            select(items.c.data).where(
                items.c.kind == "relation",
                ~items.c.deleted,
                or_(
                    *(
                        items.c.data.contains({end: {"kind": "application", "id": app_id}})
                        for end in ("source", "target")
                    )
                ),
            )
        )
    )
    owners = await Owners.load(session, rows)
    return sorted(str(d["id"]) for d in rows if owners.teams(d) != {team})


# --- item writes ------------------------------------------------------------------------------


async def put_item(
    session: AsyncSession,
    outbox: Outbox,
    actor: Actor,
    kind: str,
    item_id: str,
    body: object,
    schemas: Mapping[str, AttributeSchema],
    at: datetime,
) -> tuple[str | None, Snapshot, str | None]:
    """Create or update one item: (operation or None if unchanged, the item, change set id)."""
    item = validate_item(kind, item_id, body, schemas)
    current = await get_item(session, kind, item_id, lock=True)
    await authorize(session, actor, snapshot(item), current.live if current else None)
    problems = await missing_references(session, item)
    if problems:
        raise Invalid(problems)
    change_set = ChangeSet(session, outbox, actor.subject, None, at)
    op = await change_set.put(item)
    change_set.publish()
    return op, snapshot(item), change_set.id if op else None


async def delete_item(
    session: AsyncSession, outbox: Outbox, actor: Actor, kind: str, item_id: str, at: datetime
) -> str:
    """Delete one item (an application takes its spec with it); returns the change set id."""
    current = await get_item(session, kind, item_id, lock=True)
    if current is None or current.deleted:
        raise NotFound(f"{kind} {item_id!r} does not exist")
    await authorize(session, actor, None, current.data)
    change_set = ChangeSet(session, outbox, actor.subject, None, at)
    if kind == "application":
        for relation_id in await foreign_relations(session, item_id, current.data["owner_team"]):
            await change_set.delete("relation", relation_id)
    users = await referrers(session, kind, item_id)
    if users:  # the transaction rolls back: the relations above stay too
        more = ", ..." if len(users) > 5 else ""
        raise Conflict(
            f"{kind} {item_id!r} is still referred to by {', '.join(users[:5])}{more}; "
            "delete or move those first",
            referrers=users[:5],
        )
    if kind == "application":
        await change_set.delete("application_spec", item_id)
    await change_set.delete(kind, item_id)
    change_set.publish()
    return change_set.id


# --- specs and change requests ----------------------------------------------------------------


def spec_cause(app_id: str, revision: int) -> str:
    """How a spec revision is named as the cause of what it leads to."""
    return f"cmdb/{app_id}/spec-{revision}"


async def request_change(
    session: AsyncSession,
    outbox: Outbox,
    *,
    spec: ApplicationSpec,
    kind: str,
    replicas: int,
    requested_by: str,
    reason: str,
    at: datetime,
) -> str | None:
    """Publish change-requested once per spec revision and kind; the request id, or None if seen."""
    request_id = idempotency_key(spec.id, spec.revision, kind)  # type: ignore[arg-type]
    event_id = str(uuid.uuid4())
    fresh = await record_change_request(
        session,
        request_id=request_id,
        app_id=spec.id,
        spec_revision=spec.revision,
        kind=kind,
        event_id=event_id,
        reason=reason,
        at=at,
    )
    if not fresh:
        return None
    outbox.add(
        session,
        ChangeRequested(
            app=spec.id,
            request_id=request_id,
            kind=kind,
            target=ChangeTarget(version=spec.version, artifact=spec.artifact, replicas=replicas),
            requested_by=requested_by,
            cause=spec_cause(spec.id, spec.revision),
            reason=reason,
        ),
        event_id=event_id,
    )
    return request_id


_ROLLOUT_FIELDS = ("artifact", "version", "resources", "health_check")


async def put_spec(
    session: AsyncSession,
    outbox: Outbox,
    actor: Actor,
    app_id: str,
    body: object,
    schemas: Mapping[str, AttributeSchema],
    at: datetime,
) -> tuple[Snapshot, bool, str | None, str | None]:
    """Declare an application's spec: a new revision (unless identical) and one change request.

    Returns (spec, whether a revision was made, change set id, change request id).
    """
    app = await get_item(session, "application", app_id, lock=True)  # serialises revisions
    if app is None or app.deleted:
        raise NotFound(f"application {app_id!r} does not exist")
    if isinstance(body, dict) and "revision" in body:
        raise Invalid([problem(("body", "revision"), "the revision is assigned by the cmdb")])
    revision = await latest_spec_revision(session, app_id) + 1
    spec = validate_item(
        "application_spec",
        app_id,
        {**body, "revision": revision} if isinstance(body, dict) else body,
        schemas,
    )
    assert isinstance(spec, ApplicationSpec)
    await authorize(session, actor, snapshot(spec), None)
    current = await live_item(session, "application_spec", app_id)
    if current is not None and {**current, "revision": revision} == snapshot(spec):
        return current, False, None, None
    cause = spec_cause(app_id, revision)
    change_set = ChangeSet(session, outbox, actor.subject, cause, at)
    request_id = await write_spec_revision(
        session,
        outbox,
        change_set,
        spec,
        current,
        reason=f"spec revision {revision} applied by {actor.subject}",
    )
    change_set.publish()
    return snapshot(spec), True, change_set.id, request_id


async def write_spec_revision(
    session: AsyncSession,
    outbox: Outbox,
    change_set: ChangeSet,
    spec: ApplicationSpec,
    current: Snapshot | None,
    reason: str,
) -> str | None:
    """Make `spec` (numbered by the caller) the current one in `change_set`: the item, the spec
    revision row and its change request (a deploy when what runs changes, else a scale)."""
    await change_set.put(spec)
    await session.execute(
        spec_revisions.insert().values(
            app_id=spec.id,
            revision=spec.revision,
            spec=snapshot(spec),
            change_set_id=change_set.id,
            actor=change_set.actor,
            at=change_set.at,
        )
    )
    rollout = current is None or any(current.get(f) != snapshot(spec)[f] for f in _ROLLOUT_FIELDS)
    return await request_change(
        session,
        outbox,
        spec=spec,
        kind="deploy" if rollout else "scale",
        replicas=spec.replicas.desired,
        requested_by=change_set.actor,
        reason=reason,
        at=change_set.at,
    )


# --- change sets ------------------------------------------------------------------------------


def to_revision(row: Any) -> Revision:
    """A stored revision as the domain's value."""
    return Revision(
        sequence=row.sequence,
        change_set_id=row.change_set_id,
        item=ItemRef(kind=row.kind, id=row.item_id),
        operation=row.op,
        before=row.before,
        after=row.after,
        actor=row.actor,
        cause=row.cause,
        at=row.at,
    )


async def revert_change_set(
    session: AsyncSession,
    outbox: Outbox,
    actor: Actor,
    change_set_id: str,
    force: bool,
    at: datetime,
) -> ChangeSet:
    """Undo a change set as a new change set; Conflict over later changes unless forced."""
    original = (
        await session.execute(
            select(change_sets).where(change_sets.c.id == change_set_id).with_for_update()
        )
    ).first()
    if original is None:
        raise NotFound(f"change set {change_set_id!r} does not exist")
    if original.reverted_by is not None:
        raise Conflict(
            f"change set {change_set_id!r} was already reverted by {original.reverted_by}"
        )
    rows = (
        await session.execute(
            select(revisions)
            .where(revisions.c.change_set_id == change_set_id)
            .order_by(revisions.c.sequence)
        )
    ).all()
    touched = {(r.kind, r.item_id) for r in rows}
    # A spec's application too, locked first as `put_spec` does: it serialises spec revisions.
    apps = {("application", item_id) for kind, item_id in touched if kind == "application_spec"}
    for kind, item_id in sorted(touched | apps):
        await get_item(session, kind, item_id, lock=True)
    latest_rows = (
        await session.execute(
            select(revisions)
            .ext(distinct_on(revisions.c.kind, revisions.c.item_id))
            .where(
                or_(*(and_(revisions.c.kind == k, revisions.c.item_id == i) for k, i in touched))
            )
            .order_by(revisions.c.kind, revisions.c.item_id, revisions.c.sequence.desc())
        )
    ).all()
    latest = {(r := to_revision(row)).item: r for row in latest_rows}
    try:
        plan = plan_revert([to_revision(r) for r in rows], latest, force=force)
    except RevertConflictError as exc:
        raise Conflict(
            str(exc),
            conflicts=[
                {"item": str(c.item), "change_set_id": c.change_set_id, "sequence": c.sequence}
                for c in exc.conflicts
            ],
        ) from exc
    change_set = ChangeSet(session, outbox, actor.subject, change_set_id, at, reverts=change_set_id)
    await change_set.start()
    for step in plan:
        await authorize(session, actor, step.target, step.expected)
        await _check_references(session, change_set_id, step.item, step.target)
        if step.item.kind == "application_spec" and step.target is not None:
            await _revert_spec(session, outbox, change_set, step.item.id, step.target)
        else:
            await change_set.write(step.item.kind, step.item.id, step.target)
    await session.execute(
        update(change_sets)
        .where(change_sets.c.id == change_set_id)
        .values(reverted_by=change_set.id)
    )
    change_set.publish()
    return change_set


async def _check_references(
    session: AsyncSession, change_set_id: str, ref: ItemRef, target: Snapshot | None
) -> None:
    """Conflict unless a revert step leaves every reference whole: an item it brings back
    refers only to live items (not to an application deleted, or deleted and recreated, since),
    and an item it deletes is referred to by nothing."""
    refused = f"cannot revert change set {change_set_id}: {ref}"
    if target is None:
        users = await referrers(session, ref.kind, ref.id)
        if users:
            raise Conflict(f"{refused} is still referred to by {', '.join(users[:5])}")
        return
    try:
        item = parse_item(target)
    except ValidationError as exc:
        raise Conflict(f"{refused} as it was is no longer valid: {exc}") from exc
    missing = await missing_references(session, item)
    if missing:
        raise Conflict(
            f"{refused} would refer to what is gone: " + "; ".join(p["msg"] for p in missing)
        )


async def _revert_spec(
    session: AsyncSession, outbox: Outbox, change_set: ChangeSet, app_id: str, target: Snapshot
) -> None:
    """Bring back an earlier spec as a new revision that rolls out, like any spec change: written
    back as it was, the spec would say one thing while the old revision's change request was
    already made (and not repeated), so what runs would never follow it."""
    revision = await latest_spec_revision(session, app_id) + 1
    spec = parse_item({**target, "revision": revision})
    assert isinstance(spec, ApplicationSpec)
    current = await live_item(session, "application_spec", app_id)
    if current is not None and {**current, "revision": revision} == snapshot(spec):
        return  # the spec is already back to it (as for `put_spec`: no revision, no request)
    reason = (
        f"spec revision {revision} reverts change set {change_set.reverts} (by {change_set.actor})"
    )
    await write_spec_revision(session, outbox, change_set, spec, current, reason)


# --- closing the loop -------------------------------------------------------------------------


def _instance(app_id: str, ref: Any, finished_at: datetime) -> Instance:
    endpoint = ref.endpoint.split("://", 1)[-1].rstrip("/")
    return Instance(
        id=ref.id,
        app_id=app_id,
        version=ref.version,
        host_id=ref.host,
        zone_id=ref.zone,
        endpoint=endpoint,
        status=_INSTANCE_STATUS.get(ref.status, ref.status),
        started_at=ref.started_at or finished_at,
    )


async def live_instances(session: AsyncSession, app_id: str) -> list[Instance]:
    """An application's instances that are not deleted."""
    rows = await session.scalars(
        select(items.c.data).where(
            items.c.kind == "instance", items.c.app_id == app_id, ~items.c.deleted
        )
    )
    return [i for data in rows if isinstance(i := parse_item(data), Instance)]


async def apply_deploy_done(
    session: AsyncSession,
    outbox: Outbox,
    event: Event,
    at: datetime,
    max_gap: int = MAX_SEQUENCE_GAP,
) -> ChangeSet | None:
    """Make an application's instances the set a deployment reported, unless it is stale.

    A sequence more than `max_gap` past the applied one is refused (PermanentError: the event
    goes to the dead letters, the watermark stays). Then compare reality with the declared spec
    and ask for a change (once per spec revision and kind) when it is outside it.
    """
    done = event.data
    assert isinstance(done, DeployDone)
    if len(event.id) > _EVENT_ID_MAX_LENGTH or len(event.source) > _EVENT_SOURCE_MAX_LENGTH:
        raise PermanentError(
            f"deploy-done for {done.app}: an event id over {_EVENT_ID_MAX_LENGTH} characters or a "
            f"source over {_EVENT_SOURCE_MAX_LENGTH} does not fit the history"
        )
    try:
        report = InstanceSetReport(
            app_id=done.app,
            position=Watermark(event_time=EPOCH, sequence=done.sequence),
            instances=tuple(_instance(done.app, ref, done.finished_at) for ref in done.instances),
        )
    except ValidationError as exc:
        raise PermanentError(f"deploy-done for {done.app} has an invalid instance: {exc}") from exc
    mark = (
        await session.execute(
            select(instance_watermarks)
            .where(instance_watermarks.c.app_id == done.app)
            .with_for_update()
        )
    ).first()
    watermark = Watermark(event_time=EPOCH, sequence=mark.sequence) if mark else None
    current = await live_instances(session, done.app)
    try:
        result = apply_instance_set(current, watermark, report, max_gap)
    except ValueError as exc:
        raise PermanentError(str(exc)) from exc
    if isinstance(result, StaleInstanceSet):
        log.info(
            "ignoring deploy-done %s for %s: sequence %d is not newer than the applied %d",
            event.id,
            done.app,
            done.sequence,
            watermark.sequence if watermark else -1,
        )
        return None
    change_set = ChangeSet(session, outbox, f"event:{event.source}", event.id, at)
    for instance in result.instances:
        await change_set.put(instance)
    for instance_id in result.removed:
        await change_set.delete("instance", instance_id)
    values = {
        "sequence": done.sequence,
        "event_id": event.id,
        "finished_at": done.finished_at,
        "applied_at": at,
    }
    await session.execute(
        insert(instance_watermarks)
        .values(app_id=done.app, **values)
        .on_conflict_do_update(index_elements=["app_id"], set_=values)
    )
    change_set.publish()
    spec_data = await live_item(session, "application_spec", done.app)
    if spec_data is not None:
        spec = parse_item(spec_data)
        assert isinstance(spec, ApplicationSpec)
        drift = detect_drift(spec, result.instances)
        if drift is not None:
            await request_change(
                session,
                outbox,
                spec=spec,
                kind=drift.kind,
                replicas=drift.replicas,
                requested_by="cmdb",
                reason=drift.reason,
                at=at,
            )
    return change_set
