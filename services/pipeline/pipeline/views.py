"""Read-side queries of the pipeline's HTTP API."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from pipeline.domain import Change
from pipeline.handlers import endpoint_of
from pipeline.schemas import ArtifactOut, AuditOut, ChangeOut, InstanceOut
from pipeline.store import artifacts, audit_log, changes, instances


def change_out(row: dict[str, Any]) -> ChangeOut:
    """The API form of a stored change."""
    change = Change.model_validate(row["body"])
    return ChangeOut(
        id=row["id"],
        app=row["app"],
        request_id=row["request_id"],
        kind=row["kind"],
        state=row["state"],
        position=change.position,
        reason=change.reason or "",
        actor=row["actor"],
        cause=row["cause"],
        emergency=change.emergency,
        artifact=row["artifact"],
        target=change.target.model_dump(mode="json"),
        batch=row["batch"],
        rollout=_plan(change.rollout_plan, change.rollout_progress),
        rollback=_plan(change.rollback_plan, change.rollback_progress),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


def _plan(plan: Any, progress: Any) -> dict[str, Any] | None:
    if plan is None:
        return None
    return {
        "plan": plan.model_dump(mode="json"),
        "batches": len(plan.batches),
        "started": progress.started,
        "done": progress.done,
    }


async def list_changes(
    session: AsyncSession, app: str | None, state: str | None, limit: int
) -> list[ChangeOut]:
    """Changes, newest first, optionally of one application or in one state."""
    query = select(changes).order_by(changes.c.seq.desc()).limit(limit)
    if app is not None:
        query = query.where(changes.c.app == app)
    if state is not None:
        query = query.where(changes.c.state == state)
    return [change_out(dict(row._mapping)) for row in await session.execute(query)]


async def list_instances(session: AsyncSession, app: str, all_: bool) -> list[InstanceOut]:
    """The application's managed instances (stopped ones only when asked)."""
    query = select(instances).where(instances.c.app == app).order_by(instances.c.id)
    if not all_:
        query = query.where(instances.c.status != "stopped")
    out = []
    for row in await session.execute(query):
        data = dict(row._mapping)
        data["endpoint"] = endpoint_of(data)
        del data["port"], data["address"]
        out.append(InstanceOut(**data))
    return out


async def artifact_out(session: AsyncSession, sha: str) -> ArtifactOut | None:
    """An artifact's record."""
    row = (await session.execute(select(artifacts).where(artifacts.c.sha256 == sha))).first()
    if row is None:
        return None
    data = dict(row._mapping)
    data.pop("path")
    return ArtifactOut(**data)


async def list_audit(session: AsyncSession, app: str | None, limit: int) -> list[AuditOut]:
    """Uses of the operator controls, newest first (of one application and the platform-wide
    ones when `app` is given)."""
    query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    if app is not None:
        query = query.where((audit_log.c.app == app) | audit_log.c.app.is_(None))
    rows = await session.execute(query)
    return [AuditOut.model_validate(dict(row._mapping)) for row in rows]
