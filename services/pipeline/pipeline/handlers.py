"""Use cases of the pipeline, one async function each; the caller's session holds the transaction.

Every transition of a change goes through `save_change`, which writes the serialised Change, a
`change-progressed` event per domain event, and, when the change reaches an outcome, the
application's `deploy-done` with its complete instance set and the next per-application sequence.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ooda import telemetry
from ooda.events.contracts import ChangeProgressed, DeployDone, InstanceRef
from ooda.outbox import Outbox
from pipeline.domain import (
    FINISHED_STATES,
    BatchSpec,
    Cause,
    Change,
    ChangeKind,
    ChangeState,
    ChangeWindow,
    Freeze,
    Instance,
    InstanceStatus,
    InvalidChange,
    Pin,
    Target,
    events,
)
from pipeline.driver import LOCALHOST
from pipeline.metrics import CHANGES_FINISHED
from pipeline.store import app_state, audit_log, change_windows, changes, freezes, instances

GLOBAL = "global"


class NotFound(LookupError):
    """The change (or other item) asked for does not exist."""


@dataclass(frozen=True)
class RequestChange:
    """Ask for a change of an application; `request_id` makes asking twice harmless."""

    app: str
    kind: ChangeKind
    request_id: str
    target: Target
    batch: BatchSpec
    actor: str
    cause: Cause
    cause_text: str | None = None
    artifact: str | None = None
    reason: str = ""
    emergency: bool = False


def new_change_id() -> str:
    """A fresh change id."""
    return f"chg-{uuid.uuid4().hex[:16]}"


async def request_change(
    session: AsyncSession, outbox: Outbox, cmd: RequestChange, now: datetime
) -> tuple[dict[str, Any], bool]:
    """Queue a change, or return the one already made for this request id (and False).

    Request ids are keys within one application: another application's change is never
    returned, and its key never stops this application's request.

    The change keeps the trace context it was requested in (the consumer's span of the
    `change-requested` event, or the HTTP request's), so that its later events continue that
    trace although the executor publishes them from a background task.
    """
    existing = await change_row_by_request(session, cmd.app, cmd.request_id)
    if existing is not None:
        return existing, False
    target = cmd.target
    if cmd.kind is ChangeKind.ROLLBACK and target.version is None:
        target = target.model_copy(update={"version": await previous_version(session, cmd.app)})
    change = Change(
        id=new_change_id(),
        application=cmd.app,
        kind=cmd.kind,
        idempotency_key=cmd.request_id,
        actor=cmd.actor,
        cause=cmd.cause,
        emergency=cmd.emergency,
        created_at=now,
        target=target,
        reason=cmd.reason or None,
    )
    trace_headers = telemetry.current_trace_headers()
    inserted = await session.execute(
        insert(changes)
        .values(
            id=change.id,
            app=cmd.app,
            request_id=cmd.request_id,
            kind=cmd.kind.value,
            state=change.state.value,
            body=change.model_dump(mode="json"),
            batch=cmd.batch.model_dump(mode="json"),
            artifact=cmd.artifact,
            actor=cmd.actor,
            cause=cmd.cause_text,
            reason=cmd.reason,
            created_at=now,
            updated_at=now,
            traceparent=trace_headers.get("traceparent"),
            tracestate=trace_headers.get("tracestate"),
        )
        .on_conflict_do_nothing(index_elements=["app", "request_id"])
        .returning(changes.c.id)
    )
    if inserted.scalar_one_or_none() is None:
        raced = await change_row_by_request(session, cmd.app, cmd.request_id)
        assert raced is not None
        return raced, False
    await ensure_app_state(session, cmd.app)
    if cmd.artifact and target.version:
        await remember_artifact(session, cmd.app, target.version, cmd.artifact)
    outbox.add(
        session,
        ChangeProgressed(
            app=cmd.app,
            change_id=change.id,
            state=change.state.value,
            message=f"{cmd.kind.value} requested by {cmd.actor}"
            + (f": {cmd.reason}" if cmd.reason else ""),
        ),
    )
    row = await change_row(session, change.id)
    assert row is not None
    return row, True


async def previous_version(session: AsyncSession, app: str) -> str:
    """The version the application ran before its current one (what a rollback returns to)."""
    current = (
        await session.execute(select(app_state.c.version).where(app_state.c.app == app))
    ).scalar_one_or_none()
    succeeded = await session.execute(
        select(changes.c.body)
        .where(
            changes.c.app == app,
            changes.c.state == ChangeState.SUCCEEDED.value,
            changes.c.kind.in_([ChangeKind.DEPLOY.value, ChangeKind.ROLLBACK.value]),
        )
        .order_by(changes.c.seq.desc())
    )
    for body in succeeded.scalars():
        version = body.get("target", {}).get("version")
        if version and version != current:
            return str(version)
    raise InvalidChange(f"{app} has no earlier version to roll back to; give target.version")


async def change_row(session: AsyncSession, change_id: str) -> dict[str, Any] | None:
    """The stored row of a change."""
    found = (await session.execute(select(changes).where(changes.c.id == change_id))).first()
    return dict(found._mapping) if found else None


async def change_row_by_request(
    session: AsyncSession, app: str, request_id: str
) -> dict[str, Any] | None:
    """The stored row of the change made for `request_id` of `app`."""
    found = (
        await session.execute(
            select(changes).where(changes.c.app == app, changes.c.request_id == request_id)
        )
    ).first()
    return dict(found._mapping) if found else None


async def load_change(session: AsyncSession, change_id: str) -> Change:
    """The change, locked for update until the transaction ends."""
    found = (
        await session.execute(
            select(changes.c.body).where(changes.c.id == change_id).with_for_update()
        )
    ).scalar_one_or_none()
    if found is None:
        raise NotFound(f"no change {change_id}")
    return Change.model_validate(found)


async def load_queue(session: AsyncSession, app: str) -> list[Change]:
    """The application's unfinished changes in request order, locked for update."""
    rows = await session.execute(
        select(changes.c.body)
        .where(changes.c.app == app, changes.c.state.not_in([s.value for s in FINISHED_STATES]))
        .order_by(changes.c.seq)
        .with_for_update()
    )
    return [Change.model_validate(body) for body in rows.scalars()]


async def ensure_app_state(session: AsyncSession, app: str) -> None:
    """Create the application's state row if it has none yet."""
    await session.execute(
        insert(app_state)
        .values(app=app, artifacts={})
        .on_conflict_do_nothing(index_elements=["app"])
    )


async def remember_artifact(session: AsyncSession, app: str, version: str, sha: str) -> None:
    """Record which artifact a version of the application runs."""
    current = (
        await session.execute(
            select(app_state.c.artifacts).where(app_state.c.app == app).with_for_update()
        )
    ).scalar_one()
    if current.get(version) != sha:
        await session.execute(
            update(app_state)
            .where(app_state.c.app == app)
            .values(artifacts={**current, version: sha}, updated_at=func.now())
        )


async def artifact_map(session: AsyncSession, app: str) -> dict[str, str]:
    """Version -> artifact digest of the application."""
    found = (
        await session.execute(select(app_state.c.artifacts).where(app_state.c.app == app))
    ).scalar_one_or_none()
    return dict(found or {})


async def current_pin(session: AsyncSession, app: str) -> Pin | None:
    """The application's pinned (rolled-back) state, if any."""
    found = (
        await session.execute(select(app_state.c.pin).where(app_state.c.app == app))
    ).scalar_one_or_none()
    return Pin.model_validate(found) if found else None


async def current_freeze(session: AsyncSession) -> Freeze | None:
    """The global freeze, if one is declared."""
    found = (await session.execute(select(freezes).where(freezes.c.scope == GLOBAL))).first()
    if found is None:
        return None
    row = found._mapping
    return Freeze(reason=row["reason"], actor=row["actor"], since=row["since"], until=row["until"])


async def app_windows(session: AsyncSession, app: str) -> list[ChangeWindow]:
    """The application's change windows (none: changes may run any time)."""
    found = (
        await session.execute(select(change_windows.c.windows).where(change_windows.c.app == app))
    ).scalar_one_or_none()
    return [ChangeWindow.parse(text) for text in found or []]


async def live_instances(session: AsyncSession, app: str) -> list[dict[str, Any]]:
    """The application's managed instances that are not stopped."""
    rows = await session.execute(
        select(instances)
        .where(instances.c.app == app, instances.c.status != InstanceStatus.STOPPED.value)
        .order_by(instances.c.id)
    )
    return [dict(row._mapping) for row in rows]


def as_domain(row: dict[str, Any]) -> Instance:
    """A planning Instance from its stored row."""
    return Instance(
        id=row["id"],
        version=row["version"],
        host=row["host"],
        zone=row["zone"],
        status=InstanceStatus(row["status"]),
    )


_REF_STATUS: dict[str, Literal["starting", "ready", "stopping", "failed"]] = {
    InstanceStatus.STARTING.value: "starting",
    InstanceStatus.RUNNING.value: "ready",
    InstanceStatus.UNHEALTHY.value: "failed",
}


def endpoint_of(row: Mapping[str, Any]) -> str | None:
    """`http://address:port` of a stored instance (None before its process started)."""
    port = row["port"]
    return f"http://{row.get('address') or LOCALHOST}:{port}" if port else None


def instance_ref(row: dict[str, Any]) -> InstanceRef:
    """The deploy-done form of a stored instance."""
    return InstanceRef(
        id=row["id"],
        version=row["version"],
        host=row["host"],
        zone=row["zone"],
        endpoint=endpoint_of(row) or "",
        status=_REF_STATUS.get(row["status"], "failed"),
        started_at=row["started_at"],
    )


@contextmanager
def in_trace_of(change_id: str, traceparent: str | None, tracestate: str | None) -> Iterator[None]:
    """A span `pipeline change <id>` in the trace the change was requested in.

    Events added to the outbox inside it carry that trace. A change stored without a trace
    context (requested before changes kept one) stays in the current context.
    """
    parent = telemetry.context_from(traceparent, tracestate) if traceparent else None
    with telemetry.tracer.start_as_current_span(f"pipeline change {change_id}", context=parent):
        yield


async def save_change(session: AsyncSession, outbox: Outbox, change: Change, now: datetime) -> None:
    """Persist a change's transition with its events (and deploy-done when it just finished).

    The events are published in the trace the change was requested in (`in_trace_of`).
    """
    recorded = change.pull_events()
    previous = (
        await session.execute(
            select(
                changes.c.state, changes.c.started_at, changes.c.traceparent, changes.c.tracestate
            ).where(changes.c.id == change.id)
        )
    ).one()
    values: dict[str, Any] = {
        "state": change.state.value,
        "body": change.model_dump(mode="json"),
        "reason": change.reason or "",
        "updated_at": now,
    }
    started_at = previous.started_at
    if started_at is None and any(isinstance(e, events.BatchStarted) for e in recorded):
        started_at = values["started_at"] = now
    just_finished = change.is_finished and ChangeState(previous.state) not in FINISHED_STATES
    if just_finished:
        values["finished_at"] = now
    await session.execute(update(changes).where(changes.c.id == change.id).values(**values))
    with in_trace_of(change.id, previous.traceparent, previous.tracestate):
        for event in recorded:
            outbox.add(session, progressed(change, event))
            if isinstance(event, events.ChangeRolledBack) and event.pin is not None:
                await session.execute(
                    update(app_state)
                    .where(app_state.c.app == change.application)
                    .values(pin=event.pin.model_dump(mode="json"), updated_at=now)
                )
        if just_finished:
            await _deploy_done(session, outbox, change, started_at or now, now)


def progressed(change: Change, event: events.DomainEvent) -> ChangeProgressed:
    """The change-progressed event telling the world about one domain event."""
    batch = getattr(event, "batch", 0)
    of = getattr(event, "of", 0)
    words = type(event).__name__
    detail = getattr(event, "reason", None) or getattr(event, "by", None)
    if getattr(event, "rollback", False):
        words += " (rollback)"
    return ChangeProgressed(
        app=change.application,
        change_id=change.id,
        state=change.state.value,
        batch=batch,
        batches=of,
        message=f"{words}: {detail}" if detail else words,
    )


async def _deploy_done(
    session: AsyncSession, outbox: Outbox, change: Change, started_at: datetime, now: datetime
) -> None:
    await ensure_app_state(session, change.application)
    sequence = (
        await session.execute(
            update(app_state)
            .where(app_state.c.app == change.application)
            .values(sequence=app_state.c.sequence + 1, updated_at=now)
            .returning(app_state.c.sequence)
        )
    ).scalar_one()
    live = await live_instances(session, change.application)
    versions = sorted({row["version"] for row in live})
    version = change.target.version if change.state is ChangeState.SUCCEEDED else None
    if version is None and len(versions) == 1:
        version = versions[0]
    if change.state is ChangeState.SUCCEEDED:
        await session.execute(
            update(app_state)
            .where(app_state.c.app == change.application)
            .values(version=version, replicas=len(live))
        )
    outcome = cast(Literal["succeeded", "failed", "rolled_back", "aborted"], change.state.value)
    CHANGES_FINISHED.labels(kind=change.kind.value, outcome=outcome).inc()
    row = await change_row(session, change.id)
    assert row is not None
    outbox.add(
        session,
        DeployDone(
            app=change.application,
            change_id=change.id,
            request_id=change.idempotency_key,
            kind=change.kind.value,
            outcome=outcome,
            version=version,
            replicas=len(live),
            instances=[instance_ref(r) for r in live],
            sequence=sequence,
            requested_at=change.created_at,
            started_at=started_at,
            finished_at=now,
            error=None if change.state is ChangeState.SUCCEEDED else change.reason,
        ),
    )


async def audit(
    session: AsyncSession, actor: str, action: str, app: str | None, detail: str, at: datetime
) -> None:
    """Record who used an operator control (in the transaction of the control's change)."""
    await session.execute(
        audit_log.insert().values(at=at, actor=actor, action=action, app=app, detail=detail)
    )


async def set_freeze(
    session: AsyncSession, reason: str, actor: str, since: datetime, until: datetime | None
) -> Freeze:
    """Declare (or replace) the global freeze of releases."""
    values = {"reason": reason, "actor": actor, "since": since, "until": until}
    await session.execute(
        insert(freezes)
        .values(scope=GLOBAL, **values)
        .on_conflict_do_update(index_elements=["scope"], set_=values)
    )
    until_text = f" until {until.isoformat()}" if until else ""
    await audit(session, actor, "freeze", None, reason + until_text, since)
    return Freeze(**values)


async def lift_freeze(session: AsyncSession, actor: str, at: datetime) -> None:
    """End the global freeze."""
    lifted = await session.execute(
        freezes.delete().where(freezes.c.scope == GLOBAL).returning(freezes.c.reason)
    )
    reason = lifted.scalar_one_or_none()
    await audit(session, actor, "lift-freeze", None, reason or "no freeze was declared", at)


async def set_windows(
    session: AsyncSession, app: str, texts: list[str], actor: str, at: datetime
) -> list[str]:
    """Replace the application's change windows (validated); none means any time."""
    parsed = [ChangeWindow.parse(text).describe() for text in texts]
    values = {"windows": parsed, "actor": actor}
    await session.execute(
        insert(change_windows)
        .values(app=app, **values)
        .on_conflict_do_update(index_elements=["app"], set_={**values, "updated_at": func.now()})
    )
    await audit(session, actor, "windows", app, "; ".join(parsed) or "any time", at)
    return parsed


async def unpin(session: AsyncSession, app: str, actor: str, at: datetime) -> None:
    """Lift the application's rollback pin."""
    await session.execute(update(app_state).where(app_state.c.app == app).values(pin=None))
    await audit(session, actor, "unpin", app, "", at)


Action = Literal["pause", "resume", "abort", "rollback"]


async def act_on_change(
    session: AsyncSession,
    outbox: Outbox,
    change_id: str,
    action: Action,
    actor: str,
    reason: str,
    now: datetime,
) -> Change:
    """Pause, resume, abort or roll back a change on someone's request."""
    change = await load_change(session, change_id)
    # The reason is the change's record of the request: it always names who asked.
    because = f"{action} requested by {actor}" + (f": {reason}" if reason else "")
    if action == "pause":
        change.pause(now, because)
    elif action == "resume":
        change.resume(now)
    elif action == "abort":
        change.abort(because, now)
    else:
        change.rollback_requested(because, now)
    await save_change(session, outbox, change, now)
    await audit(session, actor, action, change.application, f"change {change_id}: {because}", now)
    return change
