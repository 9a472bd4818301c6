"""Read-side queries: targets, announced targets, range queries over rollups, rules and alerts."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from monitor.domain import Metric, RetentionPolicy, downsample
from monitor.schemas import (
    AlertOut,
    AnnouncedTargetOut,
    AuditOut,
    Point,
    RangeOut,
    RuleOut,
    RulesOut,
    TargetOut,
)
from monitor.store import (
    alert_rules,
    alerts,
    announced_targets,
    audit_log,
    rollup_from_row,
    rollups,
    targets,
)


async def list_targets(session: AsyncSession) -> list[TargetOut]:
    """Every discovered target with its last scrape state."""
    rows = (
        await session.execute(select(targets).order_by(targets.c.app, targets.c.instance_id))
    ).all()
    return [TargetOut.model_validate(row._mapping) for row in rows]


async def list_announced(
    session: AsyncSession, app: str, now: datetime
) -> list[AnnouncedTargetOut]:
    """An application's announced instances that have not expired."""
    rows = (
        await session.execute(
            select(announced_targets)
            .where(announced_targets.c.app == app, announced_targets.c.expires_at > now)
            .order_by(announced_targets.c.instance_id)
        )
    ).all()
    return [AnnouncedTargetOut.model_validate(row._mapping) for row in rows]


async def metric_range(
    session: AsyncSession,
    app: str,
    metric: Metric,
    start: datetime,
    end: datetime,
    step: timedelta,
    policy: RetentionPolicy,
    now: datetime,
) -> RangeOut:
    """One metric of an application over [start, end), recombined into `step`-long points."""
    usable = [tier for tier in policy.tiers if tier.step <= step] or [policy.tiers[0]]
    # The finest tier still holding data at `start`; the coarsest usable one when none does.
    tier = next((t for t in usable if now - t.keep <= start), usable[-1])
    rows = (
        await session.execute(
            select(rollups)
            .where(
                rollups.c.app == app,
                rollups.c.step_s == tier.step.total_seconds(),
                rollups.c.window_start >= start,
                rollups.c.window_end <= end,
            )
            .order_by(rollups.c.window_start)
        )
    ).all()
    combined = downsample([rollup_from_row(row) for row in rows], step)
    return RangeOut(
        app=app,
        metric=metric,
        step_s=step.total_seconds(),
        points=[
            Point(
                window_start=r.window_start.astimezone(UTC),
                window_end=r.window_end.astimezone(UTC),
                value=r.value(metric),
            )
            for r in combined
        ],
    )


async def rules_of(session: AsyncSession, app: str) -> RulesOut:
    """An application's stored alert rules."""
    rows = (
        await session.execute(
            select(alert_rules).where(alert_rules.c.app == app).order_by(alert_rules.c.name)
        )
    ).all()
    return RulesOut(app=app, rules=[RuleOut(name=row.name, spec=row.spec) for row in rows])


async def list_alerts(
    session: AsyncSession, state: str | None, app: str | None, limit: int
) -> list[AlertOut]:
    """Alerts, newest first, optionally only firing or resolved ones and of one application."""
    query = select(alerts).order_by(alerts.c.raised_at.desc()).limit(limit)
    if state is not None:
        query = query.where(alerts.c.state == state)
    if app is not None:
        query = query.where(alerts.c.app == app)
    return [AlertOut.model_validate(row._mapping) for row in (await session.execute(query)).all()]


async def list_audit(session: AsyncSession, app: str, limit: int) -> list[AuditOut]:
    """Who replaced the application's alert rules or withdrew its targets, newest first."""
    query = (
        select(audit_log).where(audit_log.c.app == app).order_by(audit_log.c.id.desc()).limit(limit)
    )
    return [AuditOut.model_validate(dict(r._mapping)) for r in await session.execute(query)]
