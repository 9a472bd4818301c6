"""Each application's latest decision as Prometheus gauges: forecast load against capacity.

The values come from the stored decisions: a task reads the newest decision of every application
decided on within the last hour every few seconds and `/metrics` serves that snapshot, so a
restarted process shows the same values as before.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession

from decision.store import decisions
from ooda.metrics import StoredStateMetrics
from ooda.service import Runtime

RECENT = timedelta(hours=1)
"""Applications without a decision for this long (idle, or gone) are not shown."""


async def latest_decisions(session: AsyncSession, since: datetime) -> Sequence[Any]:
    """The newest decision row of every application decided on since `since`."""
    d = decisions.c
    query = (
        select(
            d.app, d.policy, d.current_replicas, d.desired_replicas, d.capacity_per_instance,
            d.forecast, d.window_end,
        )
        .where(d.window_end >= since)
        .ext(distinct_on(d.app))
        .order_by(d.app, d.window_end.desc())
    )  # fmt: skip
    return (await session.execute(query)).all()


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def families(rows: Sequence[Any]) -> list[Metric]:
    """The metric families of the latest decision rows."""
    desired = GaugeMetricFamily(
        "ooda_decision_desired_replicas",
        "Replicas the latest decision wants",
        labels=["app", "policy"],
    )
    current = GaugeMetricFamily(
        "ooda_decision_current_replicas", "Ready replicas the latest decision saw", labels=["app"]
    )
    per_instance = GaugeMetricFamily(
        "ooda_decision_capacity_per_instance_rps",
        "Requests per second one instance serves within its objectives (learned)",
        labels=["app"],
    )
    capacity = GaugeMetricFamily(
        "ooda_decision_capacity_rps",
        "Requests per second the ready replicas serve (capacity per instance times replicas)",
        labels=["app"],
    )
    planned = GaugeMetricFamily(
        "ooda_decision_planned_capacity_rps",
        "Requests per second the desired replicas will serve",
        labels=["app"],
    )
    forecast = GaugeMetricFamily(
        "ooda_decision_forecast_rps",
        "Load the latest decision sized for (the forecast at its horizon and quantile)",
        labels=["app"],
    )
    horizon = GaugeMetricFamily(
        "ooda_decision_forecast_horizon_seconds",
        "How far ahead the latest forecast looks",
        labels=["app"],
    )
    for row in rows:
        desired.add_metric([row.app, row.policy], row.desired_replicas)
        current.add_metric([row.app], row.current_replicas)
        unit = _finite(row.capacity_per_instance)
        if unit is not None and unit > 0:
            per_instance.add_metric([row.app], unit)
            capacity.add_metric([row.app], unit * row.current_replicas)
            planned.add_metric([row.app], unit * row.desired_replicas)
        predicted = row.forecast or {}
        value = _finite(predicted.get("value"))
        if value is not None:
            forecast.add_metric([row.app], value)
            ahead = _finite(predicted.get("horizon_s"))
            if ahead is not None:
                horizon.add_metric([row.app], ahead)
    return [desired, current, per_instance, capacity, planned, forecast, horizon]


async def read_latest(rt: Runtime) -> list[Metric]:
    """The latest decisions as metric families."""
    async with rt.sessions() as session:
        rows = await latest_decisions(session, datetime.now(UTC) - RECENT)
    return families(rows)


LATEST = StoredStateMetrics("decision", read_latest)
REGISTRY.register(LATEST)


async def start_refresh(rt: Runtime) -> None:
    """The `on_start` hook: run the refresh task with the service's runtime."""
    await LATEST.start(rt)
