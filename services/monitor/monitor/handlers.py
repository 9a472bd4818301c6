"""Use cases of the monitor, one async function each."""

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from monitor.schemas import ObservationIn, ObservationOut
from monitor.store import rollups
from ooda.events import MetricObserved
from ooda.outbox import Outbox


async def record_observation(
    session: AsyncSession, outbox: Outbox, app: str, obs: ObservationIn, actor: str, now: datetime
) -> ObservationOut:
    """Store a window's aggregates and publish `metric-observed` once per (app, window)."""
    existing = (
        await session.execute(
            select(rollups).where(rollups.c.app == app, rollups.c.window_end == obs.window_end)
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
        )
    )
    return ObservationOut(
        app=app,
        **obs.model_dump(exclude={"app"}),
        event_id=event.id,
        recorded_by=actor,
        created=True,
    )
