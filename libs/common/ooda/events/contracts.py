"""Versioned payload models of every event the platform publishes, and which topic carries each.

Compatibility rule: within a version (`...v1`) fields are only added, and only as optional;
readers ignore fields they do not know, so old consumers keep working.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

APP_ID_PATTERN = r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$"


class Payload(BaseModel):
    """Base of every event payload: tolerant of unknown fields, immutable once built."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    app: str = Field(
        min_length=1,
        max_length=128,
        pattern=APP_ID_PATTERN,
        description="Application id; also the Kafka key, so one application's events stay in order",
    )


class MetricValues(BaseModel):
    """Per-application aggregates over one window; a missing value means no data, never zero."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    request_rate: float | None = Field(None, ge=0, description="requests per second")
    error_rate: float | None = Field(None, ge=0, le=1, description="share of failed requests")
    latency_p50_ms: float | None = Field(None, ge=0)
    latency_p95_ms: float | None = Field(None, ge=0)
    latency_p99_ms: float | None = Field(None, ge=0)
    cpu_utilisation: float | None = Field(None, ge=0, description="busy share of requested CPU")
    in_flight: float | None = Field(None, ge=0)
    ready_instances: int | None = Field(None, ge=0)
    load_per_instance: float | None = Field(None, ge=0)


class MetricObserved(Payload):
    """The monitor observed an application over one window."""

    window_start: datetime
    window_end: datetime
    values: MetricValues
    instance_count: int = Field(ge=0)
    staleness_s: float = Field(0.0, ge=0, description="age of the newest sample at publish time")


class Forecast(BaseModel):
    """A forecast of load at a horizon, at a quantile."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    horizon_s: float = Field(ge=0)
    value: float = Field(ge=0)
    quantile: float = Field(0.5, gt=0, lt=1)


class ScaleDecided(Payload):
    """The decision center chose a replica count for an application, and says why."""

    decision_id: str
    policy: str
    current_replicas: int = Field(ge=0)
    desired_replicas: int = Field(ge=0)
    forecast: Forecast | None = None
    capacity_per_instance: float | None = Field(None, gt=0)
    reason: str
    inputs: dict[str, float | int | str | None] = Field(default_factory=dict)


ChangeKind = Literal["deploy", "scale", "migrate", "restart", "rollback"]


class ChangeTarget(BaseModel):
    """What a change should converge to; which fields matter depends on the kind."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    version: str | None = None
    artifact: str | None = Field(None, description="sha256 digest of the artifact to run")
    replicas: int | None = Field(None, ge=0)
    from_pool: str | None = None
    from_zone: str | None = None
    to_pool: str | None = None
    to_zone: str | None = None
    revision: int | None = Field(None, ge=0, description="spec revision to roll back to")
    placement: dict[str, int] | None = Field(None, description="instances per zone")


class ChangeRequested(Payload):
    """Someone or something asked for a change; `request_id` is its idempotency key."""

    request_id: str = Field(min_length=1, max_length=200)
    kind: ChangeKind
    target: ChangeTarget
    requested_by: str = Field(min_length=1, description="authenticated subject or service")
    cause: str | None = Field(None, description="event id, spec revision or request that led here")
    reason: str = ""
    emergency: bool = False


class InstanceRef(BaseModel):
    """One running instance of an application, as the pipeline left it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    version: str
    host: str
    zone: str
    endpoint: str = Field(description="http://host:port of the instance")
    status: Literal["starting", "ready", "stopping", "failed"] = "ready"
    started_at: datetime | None = None


class DeployDone(Payload):
    """A change finished; `instances` is the application's complete instance set afterwards."""

    change_id: str
    request_id: str
    kind: ChangeKind
    outcome: Literal["succeeded", "failed", "rolled_back", "aborted"]
    version: str | None = None
    replicas: int = Field(ge=0)
    instances: list[InstanceRef]
    sequence: int = Field(ge=0, description="per-application order; older sequences are stale")
    requested_at: datetime | None = None
    started_at: datetime
    finished_at: datetime
    error: str | None = None


class ItemChange(BaseModel):
    """One item changed in a CMDB change set."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: str
    id: str
    op: Literal["create", "update", "delete"]


class CmdbChanged(Payload):
    """A CMDB change set was committed (by a person, an import, or an event).

    A change set with more items than one record holds (a large import) is announced in several
    events with the same `change_set_id`, numbered `part` of `parts`.
    """

    change_set_id: str
    actor: str
    cause: str | None = None
    items: list[ItemChange]
    part: int = Field(1, ge=1, description="which of the change set's events this is (from 1)")
    parts: int = Field(1, ge=1, description="how many events announce this change set")

    def split(self, max_bytes: int) -> builtins.list[CmdbChanged]:
        """This event as parts whose JSON is at most `max_bytes` each (itself if it fits)."""
        if len(self.model_dump_json()) <= max_bytes:
            return [self]
        empty = self.model_copy(update={"items": [], "part": 10**6, "parts": 10**6})
        room = max_bytes - len(empty.model_dump_json())
        chunks: builtins.list[builtins.list[ItemChange]] = [[]]
        used = 0
        for item in self.items:
            size = len(item.model_dump_json()) + 1
            if chunks[-1] and used + size > room:
                chunks.append([])
                used = 0
            chunks[-1].append(item)
            used += size
        n = len(chunks)
        return [
            self.model_copy(update={"items": chunk, "part": i, "parts": n})
            for i, chunk in enumerate(chunks, 1)
        ]


class ChangeProgressed(Payload):
    """A change moved through its state machine."""

    change_id: str
    state: str
    batch: int = Field(0, ge=0)
    batches: int = Field(0, ge=0)
    message: str = ""


class AlertRaised(Payload):
    """An alert rule started or stopped firing for an application."""

    alert_id: str
    rule: str
    state: Literal["firing", "resolved"]
    severity: Literal["info", "warning", "critical"] = "warning"
    value: float | None = None
    threshold: float | None = None
    summary: str = ""


@dataclass(frozen=True)
class EventSpec:
    """One event type: its CloudEvents type, the topic that carries it and who publishes it."""

    type: str
    topic: str
    model: builtins.type[Payload]
    producer: str
    consumers: tuple[str, ...]
    description: str

    @property
    def producers(self) -> tuple[str, ...]:
        """The services that publish this type (the only principals that may write its topic)."""
        return tuple(name.strip() for name in self.producer.split(","))

    @property
    def sources(self) -> tuple[str, ...]:
        """The CloudEvents `source` of each producer (`/ooda/<service>`)."""
        return tuple(f"/ooda/{name}" for name in self.producers)

    @property
    def dead_letter_topic(self) -> str:
        """Where consumers put messages of this topic that they cannot process."""
        return f"{self.topic}.dlq"


CATALOG: tuple[EventSpec, ...] = (
    EventSpec(
        "io.ooda.metric.observed.v1",
        "metric-observed",
        MetricObserved,
        "monitor",
        ("decision",),
        "Per-application aggregates for one monitoring window.",
    ),
    EventSpec(
        "io.ooda.scale.decided.v1",
        "scale-decided",
        ScaleDecided,
        "decision",
        ("elastic",),
        "A replica count chosen by the decision center, with its explanation.",
    ),
    EventSpec(
        "io.ooda.change.requested.v1",
        "change-requested",
        ChangeRequested,
        "cmdb, elastic",
        ("pipeline",),
        "A request to deploy, scale, migrate, restart or roll back an application.",
    ),
    EventSpec(
        "io.ooda.deploy.done.v1",
        "deploy-done",
        DeployDone,
        "pipeline",
        ("cmdb", "decision", "elastic"),
        "A change finished, with the resulting instance set.",
    ),
    EventSpec(
        "io.ooda.cmdb.changed.v1",
        "cmdb-changed",
        CmdbChanged,
        "cmdb",
        ("monitor",),
        "A CMDB change set was committed.",
    ),
    EventSpec(
        "io.ooda.change.progressed.v1",
        "change-progressed",
        ChangeProgressed,
        "pipeline",
        (),
        "A change moved to a new state or batch.",
    ),
    EventSpec(
        "io.ooda.alert.raised.v1",
        "alert-raised",
        AlertRaised,
        "monitor",
        (),
        "An alert started or stopped firing.",
    ),
)

_BY_TYPE = {spec.type: spec for spec in CATALOG}
_BY_MODEL = {spec.model: spec for spec in CATALOG}


def spec_for_type(event_type: str) -> EventSpec | None:
    """The spec of a CloudEvents type, or None when the platform does not know it."""
    return _BY_TYPE.get(event_type)


def spec_for_payload(payload: Payload | type[Payload]) -> EventSpec:
    """The spec of a payload model or instance."""
    model = payload if isinstance(payload, type) else type(payload)
    return _BY_MODEL[model]


def topics() -> list[str]:
    """Every topic the platform uses, dead-letter topics included."""
    names = sorted({spec.topic for spec in CATALOG})
    return names + [f"{name}.dlq" for name in names]
