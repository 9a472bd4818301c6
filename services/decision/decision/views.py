"""Read-side queries of the decision center."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from decision.store import decisions, load_history


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


class DecisionOut(BaseModel):
    """One decision and why it was taken."""

    decision_id: str
    app: str
    window_end: datetime
    policy: str
    current_replicas: int
    desired_replicas: int
    capacity_per_instance: float | None
    forecast: dict[str, Any] | None
    reason: str
    inputs: dict[str, Any]
    published: bool
    event_id: str | None
    decided_at: datetime


async def recent_decisions(
    session: AsyncSession, app: str, limit: int, published_only: bool
) -> list[DecisionOut]:
    """The newest `limit` decisions of an application, oldest first."""
    query = select(decisions).where(decisions.c.app == app)
    if published_only:
        query = query.where(decisions.c.published.is_(True))
    rows = (await session.execute(query.order_by(decisions.c.window_end.desc()).limit(limit))).all()
    return [DecisionOut.model_validate(r._mapping) for r in reversed(rows)]


async def one_decision(session: AsyncSession, decision_id: str) -> DecisionOut | None:
    """A decision by id."""
    row = (
        await session.execute(select(decisions).where(decisions.c.decision_id == decision_id))
    ).one_or_none()
    return DecisionOut.model_validate(row._mapping) if row else None
