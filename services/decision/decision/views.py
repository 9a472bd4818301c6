"""Read-side queries of the decision center."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from decision.store import load_history


class LoadPoint(BaseModel):
    """One observed window of an application's load."""

    window_start: datetime
    window_end: datetime
    request_rate: float | None
    instance_count: int
    values: dict[str, Any]
    event_id: str
    trace_id: str | None


async def recent_load(session: AsyncSession, app: str, limit: int) -> list[LoadPoint]:
    """The newest `limit` windows of an application's load, oldest first."""
    rows = (
        await session.execute(
            select(load_history)
            .where(load_history.c.app == app)
            .order_by(load_history.c.window_end.desc())
            .limit(limit)
        )
    ).all()
    return [LoadPoint.model_validate(r._mapping) for r in reversed(rows)]
