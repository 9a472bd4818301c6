"""Use cases of the decision center, one async function each."""

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from decision.store import load_history
from ooda.events import Event, MetricObserved
from ooda.telemetry import trace_id_of


async def remember_observations(session: AsyncSession, events: list[Event]) -> None:
    """Add observed windows to each application's load history (a window counts once)."""
    rows = []
    for event in events:
        obs = event.data
        assert isinstance(obs, MetricObserved)
        rows.append(
            {
                "app": obs.app,
                "window_start": obs.window_start,
                "window_end": obs.window_end,
                "request_rate": obs.values.request_rate,
                "values": obs.values.model_dump(mode="json"),
                "instance_count": obs.instance_count,
                "event_id": event.id,
                "trace_id": trace_id_of(event.traceparent),
            }
        )
    await session.execute(
        insert(load_history).on_conflict_do_nothing(constraint="uq_load_history_app_window_end"),
        rows,
    )
