"""Use cases of the monitor, one async function each; the caller owns the transaction."""

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from monitor.domain import (
    AlertRaised,
    AlertState,
    AppRollup,
    OpenAlert,
    Rule,
    ScrapeResult,
    SeriesKey,
    Snapshot,
    Target,
    TierPlan,
    downsample,
    evaluate_rules,
)
from monitor.rules import rule_from_spec
from monitor.schemas import AnnounceIn, ObservationIn, ObservationOut, PushIn, PushOut
from monitor.store import (
    alert_rules,
    alert_states,
    alerts,
    announced_targets,
    audit_log,
    pushed_samples,
    rollup_from_row,
    rollup_row,
    rollups,
    targets,
)
from ooda.events import AlertRaised as AlertRaisedEvent
from ooda.events import MetricObserved
from ooda.events.contracts import MetricValues
from ooda.outbox import Outbox

SCRAPER = "monitor/scraper"


async def record_observation(
    session: AsyncSession, outbox: Outbox, app: str, obs: ObservationIn, actor: str, now: datetime
) -> ObservationOut:
    """Store a window's aggregates and publish `metric-observed` once per (app, window)."""
    step_s = (obs.window_end - obs.window_start).total_seconds()
    existing = (
        await session.execute(
            select(rollups).where(
                rollups.c.app == app,
                rollups.c.step_s == step_s,
                rollups.c.window_end == obs.window_end,
            )
        )
    ).one_or_none()
    if existing is not None:
        return ObservationOut(
            app=app,
            window_start=existing.window_start,
            window_end=existing.window_end,
            values=existing.values,
            instance_count=existing.instance_count,
            event_id=existing.event_id,
            recorded_by=existing.recorded_by,
            created=False,
        )
    staleness = max(0.0, (now - obs.window_end).total_seconds())
    event = outbox.add(
        session,
        MetricObserved(
            app=app,
            window_start=obs.window_start,
            window_end=obs.window_end,
            values=obs.values,
            instance_count=obs.instance_count,
            staleness_s=staleness,
        ),
    )
    await session.execute(
        rollups.insert().values(
            app=app,
            window_start=obs.window_start.astimezone(UTC),
            window_end=obs.window_end.astimezone(UTC),
            values=obs.values.model_dump(mode="json"),
            instance_count=obs.instance_count,
            event_id=event.id,
            recorded_by=actor,
            step_s=step_s,
            staleness_s=staleness,
            requests=(obs.values.request_rate or 0.0) * step_s,
            errors=(obs.values.request_rate or 0.0) * step_s * (obs.values.error_rate or 0.0),
        )
    )
    return ObservationOut(
        app=app,
        **obs.model_dump(exclude={"app"}),
        event_id=event.id,
        recorded_by=actor,
        created=True,
    )


@dataclass(frozen=True, slots=True)
class TargetChanges:
    """What a service-discovery refresh changed."""

    added: list[str]
    removed: list[str]


async def sync_targets(session: AsyncSession, found: Sequence[Target]) -> TargetChanges:
    """Make the stored targets exactly the given ones, keeping the state of those that stay."""
    known = {
        row.instance_id: (row.app, row.url, row.source, row.labels)
        for row in (
            await session.execute(
                select(
                    targets.c.instance_id,
                    targets.c.app,
                    targets.c.url,
                    targets.c.source,
                    targets.c.labels,
                )
            )
        )
    }
    by_id = {t.instance_id: t for t in found}
    removed = sorted(set(known) - set(by_id))
    if removed:
        await session.execute(delete(targets).where(targets.c.instance_id.in_(removed)))
    changed = [
        t for t in found if known.get(t.instance_id) != (t.app_id, t.url, t.source, dict(t.labels))
    ]
    if changed:
        stmt = insert(targets)
        # The last scrape's state stays while the URL does (a source or label change keeps it).
        same_url = targets.c.url == stmt.excluded.url
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=[targets.c.instance_id],
                set_={
                    "app": stmt.excluded.app,
                    "url": stmt.excluded.url,
                    "source": stmt.excluded.source,
                    "labels": stmt.excluded.labels,
                    "up": case((same_url, targets.c.up), else_=None),
                },
            ),
            [
                {
                    "instance_id": t.instance_id,
                    "app": t.app_id,
                    "url": t.url,
                    "source": t.source,
                    "labels": dict(t.labels),
                }
                for t in changed
            ],
        )
    return TargetChanges(
        added=[t.instance_id for t in changed if t.instance_id not in known], removed=removed
    )


class AnnouncedElsewhere(Exception):
    """Instances announced already for another application."""

    def __init__(self, owners: Mapping[str, str]) -> None:
        self.owners = dict(owners)
        listed = ", ".join(f"{i} (of {a})" for i, a in sorted(owners.items()))
        super().__init__(f"already announced for another application: {listed}")


def announced_url(endpoint: str, metrics_path: str) -> str:
    """The scrape URL of an announced instance."""
    return f"http://{endpoint}{metrics_path}"


async def announce_targets(
    session: AsyncSession, app: str, body: AnnounceIn, actor: str, now: datetime
) -> None:
    """Store (or refresh) announced instances of `app`, each expiring `ttl_seconds` from now."""
    ids = [t.instance_id for t in body.targets]
    owners = {
        row.instance_id: row.app
        for row in await session.execute(
            select(announced_targets.c.instance_id, announced_targets.c.app).where(
                announced_targets.c.instance_id.in_(ids),
                announced_targets.c.app != app,
                announced_targets.c.expires_at > now,
            )
        )
    }
    if owners:
        raise AnnouncedElsewhere(owners)
    expires_at = now + timedelta(seconds=body.ttl_seconds)
    stmt = insert(announced_targets)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[announced_targets.c.instance_id],
            set_={
                column: stmt.excluded[column]
                for column in (
                    "app",
                    "endpoint",
                    "metrics_path",
                    "version",
                    "zone",
                    "labels",
                    "announced_by",
                    "announced_at",
                    "expires_at",
                )
            },
        ),
        [
            {
                "instance_id": t.instance_id,
                "app": app,
                "endpoint": t.endpoint,
                "metrics_path": t.metrics_path,
                "version": t.version,
                "zone": t.zone,
                "labels": t.labels,
                "announced_by": actor,
                "announced_at": now,
                "expires_at": expires_at,
            }
            for t in body.targets
        ],
    )


async def audit(session: AsyncSession, actor: str, action: str, app: str, detail: str) -> None:
    """Record who changed what the monitor keeps no history of (in the change's transaction)."""
    await session.execute(
        audit_log.insert().values(actor=actor, action=action, app=app, detail=detail)
    )


async def withdraw_targets(
    session: AsyncSession, app: str, instance_ids: Iterable[str], actor: str
) -> list[str]:
    """Forget announced instances of `app`; the ids of those that were announced."""
    gone = await session.execute(
        delete(announced_targets)
        .where(
            announced_targets.c.app == app,
            announced_targets.c.instance_id.in_(list(instance_ids)),
        )
        .returning(announced_targets.c.instance_id)
    )
    found = sorted(gone.scalars())
    if found:
        await audit(session, actor, "withdraw", app, ", ".join(found))
    return found


async def live_announced(
    session: AsyncSession, now: datetime, listed: Iterable[str] = ()
) -> dict[Target, datetime]:
    """The announced targets still to scrape, each with its expiry.

    Expired announcements are deleted, and so are those of instances the CMDB now lists
    (`listed`, instance ids): from then on the CMDB is the authority on them.
    """
    listed = list(listed)
    ended = announced_targets.c.expires_at <= now
    if listed:
        ended = or_(ended, announced_targets.c.instance_id.in_(listed))
    await session.execute(delete(announced_targets).where(ended))
    rows = (await session.execute(select(announced_targets))).all()
    return {
        Target(
            app_id=row.app,
            instance_id=row.instance_id,
            url=announced_url(row.endpoint, row.metrics_path),
            source="announced",
            labels=tuple(sorted({**row.labels, "version": row.version, "zone": row.zone}.items())),
        ): row.expires_at
        for row in rows
    }


async def save_scrape_states(session: AsyncSession, results: Sequence[ScrapeResult]) -> None:
    """Record each target's last scrape: up, duration, error, series kept and dropped."""
    if not results:
        return
    stmt = (
        update(targets)
        .where(targets.c.instance_id == bindparam("b_instance"))
        .values(
            up=bindparam("b_up"),
            last_scrape_at=bindparam("b_at"),
            duration_s=bindparam("b_duration"),
            last_error=bindparam("b_error"),
            series=bindparam("b_series"),
            dropped=bindparam("b_dropped"),
        )
    )
    conn = await session.connection()
    await conn.execute(
        stmt,
        [
            {
                "b_instance": r.target.instance_id,
                "b_up": r.up,
                "b_at": r.started_at,
                "b_duration": r.duration_s,
                "b_error": r.last_error,
                "b_series": r.series,
                "b_dropped": r.dropped,
            }
            for r in results
        ],
    )


async def publish_rollup(
    session: AsyncSession, outbox: Outbox, rollup: AppRollup, step_s: float
) -> bool:
    """Store a window's rollup and publish `metric-observed`, exactly once per (app, window)."""
    event_id = str(uuid.uuid4())
    stmt = (
        insert(rollups)
        .values(**rollup_row(rollup, step_s), event_id=event_id, recorded_by=SCRAPER)
        .on_conflict_do_nothing(constraint="uq_rollups_app_step_s_window_end")
        .returning(rollups.c.id)
    )
    if (await session.execute(stmt)).scalar_one_or_none() is None:
        return False
    payload = rollup.as_payload()
    outbox.add(
        session,
        MetricObserved(
            app=rollup.app_id,
            window_start=rollup.window_start,
            window_end=rollup.window_end,
            values=MetricValues.model_validate(payload["values"]),
            instance_count=rollup.instance_count,
            staleness_s=rollup.staleness_s,
        ),
        event_id=event_id,
    )
    return True


async def downsample_tier(session: AsyncSession, plan: TierPlan) -> int:
    """Combine a tier's closed windows into the next tier, then delete what is past retention."""
    step_s = plan.step.total_seconds()
    made = 0
    if plan.downsample_to is not None and plan.downsample_before is not None:
        coarse_s = plan.downsample_to.total_seconds()
        coarser = rollups.alias("coarser")
        # Only finer windows after the application's newest coarser window are still unmerged.
        merged_until = (
            select(func.max(coarser.c.window_end))
            .where(coarser.c.app == rollups.c.app, coarser.c.step_s == coarse_s)
            .scalar_subquery()
        )
        rows = (
            await session.execute(
                select(rollups).where(
                    rollups.c.step_s == step_s,
                    rollups.c.window_end <= plan.downsample_before,
                    or_(merged_until.is_(None), rollups.c.window_start >= merged_until),
                )
            )
        ).all()
        fresh = [rollup_from_row(row) for row in rows]
        for coarse in downsample(fresh, plan.downsample_to):
            await session.execute(
                insert(rollups)
                .values(
                    **rollup_row(coarse, coarse_s),
                    event_id="",
                    recorded_by="monitor/downsampler",
                )
                .on_conflict_do_nothing(constraint="uq_rollups_app_step_s_window_end")
            )
            made += 1
    await session.execute(
        delete(rollups).where(rollups.c.step_s == step_s, rollups.c.window_end < plan.delete_before)
    )
    return made


async def store_push(session: AsyncSession, push: PushIn, actor: str, now: datetime) -> PushOut:
    """Store one instance's pushed samples (all or nothing), keeping its two newest pushes."""
    samples = [[s.name, sorted(s.labels.items()), s.value] for s in push.samples]
    await session.execute(
        pushed_samples.insert().values(
            app=push.app, instance=push.instance, at=now, samples=samples, pushed_by=actor
        )
    )
    keep = (
        select(pushed_samples.c.id)
        .where(pushed_samples.c.app == push.app, pushed_samples.c.instance == push.instance)
        .order_by(pushed_samples.c.at.desc(), pushed_samples.c.id.desc())
        .limit(2)
    )
    await session.execute(
        delete(pushed_samples).where(
            pushed_samples.c.app == push.app,
            pushed_samples.c.instance == push.instance,
            pushed_samples.c.id.not_in(keep.scalar_subquery()),
        )
    )
    return PushOut(app=push.app, instance=push.instance, at=now, series=len(samples))


async def pushed_snapshots(
    session: AsyncSession, since: datetime
) -> dict[str, tuple[list[Snapshot], list[Snapshot]]]:
    """Per application, previous and current snapshots of instances that pushed since `since`."""
    rows = (
        await session.execute(
            select(pushed_samples).order_by(pushed_samples.c.at, pushed_samples.c.id)
        )
    ).all()
    by_instance: dict[tuple[str, str], list[Any]] = {}
    for row in rows:
        by_instance.setdefault((row.app, row.instance), []).append(row)
    result: dict[str, tuple[list[Snapshot], list[Snapshot]]] = {}
    for (app, instance), pushes in by_instance.items():
        newest = pushes[-1]
        if newest.at < since:
            continue
        previous, current = result.setdefault(app, ([], []))
        instance_id = f"push:{instance}"
        current.append(Snapshot(instance_id, newest.at, _samples(newest.samples)))
        if len(pushes) > 1:
            previous.append(Snapshot(instance_id, pushes[-2].at, _samples(pushes[-2].samples)))
    return result


def _samples(stored: Iterable[Any]) -> dict[SeriesKey, float]:
    return {
        (name, tuple((str(k), str(v)) for k, v in labels)): float(value)
        for name, labels, value in stored
    }


async def replace_rules(
    session: AsyncSession, app: str, specs: Sequence[dict[str, Any]], actor: str
) -> None:
    """Make `specs` the application's complete rule set; alerts of dropped rules are resolved."""
    names = [spec["name"] for spec in specs]
    await session.execute(delete(alert_rules).where(alert_rules.c.app == app))
    await session.execute(
        delete(alert_states).where(alert_states.c.app == app, alert_states.c.rule.not_in(names))
    )
    if specs:
        await session.execute(
            alert_rules.insert(),
            [{"app": app, "name": s["name"], "spec": s, "updated_by": actor} for s in specs],
        )
    await audit(session, actor, "alert-rules", app, ", ".join(names) or "no rules")


async def load_rules(session: AsyncSession) -> list[Rule]:
    """Every application's alert rules as domain rules."""
    rows = (await session.execute(select(alert_rules.c.app, alert_rules.c.spec))).all()
    return [rule_from_spec(row.app, row.spec) for row in rows]


async def evaluate_alerts(
    session: AsyncSession, outbox: Outbox, rules: Sequence[Rule], now: datetime, step_s: float
) -> int:
    """Advance every rule one interval; publish `alert-raised` when an alert fires or resolves."""
    if not rules:
        return 0
    longest = max(_lookback(rule) for rule in rules)
    apps = sorted({rule.app_id for rule in rules})
    rows = (
        await session.execute(
            select(rollups).where(
                rollups.c.app.in_(apps),
                rollups.c.step_s == step_s,
                rollups.c.window_end > now - longest,
            )
        )
    ).all()
    history: dict[str, list[AppRollup]] = {}
    for row in rows:
        history.setdefault(row.app, []).append(rollup_from_row(row))
    state_rows = (
        await session.execute(
            select(alert_states).where(alert_states.c.app.in_(apps)).with_for_update()
        )
    ).all()
    states = {
        (row.rule, row.app): AlertState(
            pending_since=row.pending_since,
            open=OpenAlert(row.alert_id, row.raised_at) if row.alert_id else None,
            clear_since=row.clear_since,
        )
        for row in state_rows
    }
    new_states, events = evaluate_rules(rules, states, history, now)
    await _save_states(session, new_states)
    for event in events:
        payload = event.as_payload()
        outbox.add(session, AlertRaisedEvent.model_validate(payload))
        if isinstance(event, AlertRaised):
            await session.execute(
                insert(alerts)
                .values(
                    alert_id=event.alert_id,
                    app=event.app_id,
                    rule=event.rule,
                    state="firing",
                    severity=event.severity,
                    value=event.value,
                    threshold=event.threshold,
                    summary=event.summary,
                    raised_at=event.at,
                )
                .on_conflict_do_nothing(index_elements=[alerts.c.alert_id])
            )
        else:
            await session.execute(
                update(alerts)
                .where(alerts.c.alert_id == event.alert_id)
                .values(state="resolved", resolved_at=event.at, value=event.value)
            )
    return len(events)


async def _save_states(session: AsyncSession, states: Mapping[tuple[str, str], AlertState]) -> None:
    rows = [
        {
            "app": app,
            "rule": rule,
            "pending_since": state.pending_since,
            "alert_id": state.open.alert_id if state.open else None,
            "raised_at": state.open.raised_at if state.open else None,
            "clear_since": state.clear_since,
        }
        for (rule, app), state in states.items()
    ]
    if not rows:
        return
    stmt = insert(alert_states)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[alert_states.c.app, alert_states.c.rule],
            set_={
                "pending_since": stmt.excluded.pending_since,
                "alert_id": stmt.excluded.alert_id,
                "raised_at": stmt.excluded.raised_at,
                "clear_since": stmt.excluded.clear_since,
            },
        ),
        rows,
    )


def _lookback(rule: Rule) -> timedelta:
    long_window = getattr(rule, "long_window", None)
    return max(long_window or timedelta(0), timedelta(minutes=5))
