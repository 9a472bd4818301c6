"""Tables of the monitor's own database."""

import math
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Identity,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)

from monitor.domain import AppRollup, Histogram, Metric
from ooda.db import Messaging, new_metadata

metadata = new_metadata()
messaging = Messaging(metadata)

rollups = Table(
    "rollups",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("app", String(128), nullable=False),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("window_end", DateTime(timezone=True), nullable=False),
    Column("values", JSON, nullable=False),
    Column("instance_count", Integer, nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("recorded_by", String(200), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Window length: the scrape interval for published windows, coarser for downsampled ones.
    Column("step_s", Float, nullable=False, server_default="0"),
    Column("staleness_s", Float, nullable=False, server_default="0"),
    # Kept so coarser windows and burn rates combine exactly (see monitor.domain.rollup).
    Column("requests", Float, nullable=False, server_default="0"),
    Column("errors", Float, nullable=False, server_default="0"),
    Column("latency", JSON, nullable=True),
    UniqueConstraint("app", "step_s", "window_end", name="uq_rollups_app_step_s_window_end"),
)

targets = Table(
    "targets",
    metadata,
    Column("instance_id", String(200), primary_key=True),
    Column("app", String(128), nullable=False),
    Column("url", String(1000), nullable=False),
    Column("labels", JSON, nullable=False),
    Column("discovered_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("up", Boolean, nullable=True),
    Column("last_scrape_at", DateTime(timezone=True), nullable=True),
    Column("duration_s", Float, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("series", Integer, nullable=False, server_default="0"),
    Column("dropped", Integer, nullable=False, server_default="0"),
    # "sd" (the CMDB's service discovery) or "announced" (by a deployer, see announced_targets).
    Column("source", String(16), nullable=False, server_default="sd"),
)

# Instances a deployer announced before the CMDB knows them (a rollout's new batch), scraped
# until `expires_at` or until the CMDB's service discovery lists the same instance.
announced_targets = Table(
    "announced_targets",
    metadata,
    Column("instance_id", String(200), primary_key=True),
    Column("app", String(128), nullable=False),
    Column("endpoint", String(300), nullable=False),
    Column("metrics_path", String(200), nullable=False),
    Column("version", String(128), nullable=False),
    Column("zone", String(128), nullable=False),
    Column("labels", JSON, nullable=False),
    Column("announced_by", String(200), nullable=False),
    Column("announced_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_announced_targets_app", "app"),
    Index("ix_announced_targets_expires_at", "expires_at"),
)

pushed_samples = Table(
    "pushed_samples",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("app", String(128), nullable=False),
    Column("instance", String(200), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("samples", JSON, nullable=False),
    Column("pushed_by", String(200), nullable=False),
    Index("ix_pushed_samples_app_instance_at", "app", "instance", "at"),
)

alert_rules = Table(
    "alert_rules",
    metadata,
    Column("app", String(128), primary_key=True),
    Column("name", String(200), primary_key=True),
    Column("spec", JSON, nullable=False),
    Column("updated_by", String(200), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

alert_states = Table(
    "alert_states",
    metadata,
    Column("app", String(128), primary_key=True),
    Column("rule", String(200), primary_key=True),
    Column("pending_since", DateTime(timezone=True), nullable=True),
    Column("alert_id", String(64), nullable=True),
    Column("raised_at", DateTime(timezone=True), nullable=True),
    Column("clear_since", DateTime(timezone=True), nullable=True),
)

alerts = Table(
    "alerts",
    metadata,
    Column("alert_id", String(64), primary_key=True),
    Column("app", String(128), nullable=False),
    Column("rule", String(200), nullable=False),
    Column("state", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("value", Float, nullable=True),
    Column("threshold", Float, nullable=False),
    Column("summary", Text, nullable=False),
    Column("raised_at", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    Index("ix_alerts_state", "state"),
)


def rollup_row(rollup: AppRollup, step_s: float) -> dict[str, Any]:
    """The column values of a rollup (its event id and author are added by the caller)."""
    return {
        "app": rollup.app_id,
        "window_start": rollup.window_start,
        "window_end": rollup.window_end,
        "values": {metric.value: rollup.values.get(metric) for metric in Metric},
        "instance_count": rollup.instance_count,
        "step_s": step_s,
        "staleness_s": rollup.staleness_s,
        "requests": rollup.requests,
        "errors": rollup.errors,
        "latency": _latency_json(rollup.latency),
    }


def rollup_from_row(row: Any) -> AppRollup:
    """A stored rollup back as the domain value."""
    values: dict[Metric, float | None] = {}
    for metric in Metric:
        value = (row.values or {}).get(metric.value)
        values[metric] = None if value is None else float(value)
    latency = row.latency or {}
    bounds = tuple(_bound(b) for b in latency.get("bounds", ()))
    return AppRollup(
        app_id=row.app,
        window_start=row.window_start,
        window_end=row.window_end,
        values=values,
        instance_count=row.instance_count,
        staleness_s=row.staleness_s,
        requests=row.requests,
        errors=row.errors,
        latency=Histogram(bounds, tuple(float(c) for c in latency.get("counts", ()))),
    )


def _latency_json(histogram: Histogram) -> dict[str, list[Any]]:
    # JSON has no infinity, so +Inf bounds are spelled as Prometheus spells them.
    return {
        "bounds": [("+Inf" if math.isinf(b) else b) for b in histogram.bounds],
        "counts": list(histogram.counts),
    }


def _bound(value: Any) -> float:
    return math.inf if value == "+Inf" else float(value)


audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("actor", String(200), nullable=False),
    Column("action", String(32), nullable=False, comment="alert-rules, withdraw"),
    Column("app", String(128), nullable=False, index=True),
    Column("detail", Text, nullable=False, server_default=""),
    comment="who replaced alert rules or withdrew targets, and when (those rows are deleted)",
)
