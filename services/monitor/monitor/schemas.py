"""Request and response models of the monitor's HTTP API."""

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from monitor.domain import Metric, Op
from ooda.bounds import (
    FLOAT_MAX,
    INT32_MAX,
    Count32,
    Finite,
    HostPort,
    Moment,
    NoNul,
    PositiveSeconds,
    Seconds,
)
from ooda.events.contracts import APP_ID_PATTERN, MetricValues

Severity = Literal["info", "warning", "critical"]
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_RULE_NAME = r"^[a-zA-Z0-9][a-zA-Z0-9._-]*$"
INSTANCE_ID_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9._:-]*$"
_METRICS_PATH = r"^/[a-zA-Z0-9._~!$&'()*+,;=:@%/-]*$"
_PRINTABLE = r"^[^\s\x00-\x1f\x7f]+$"
MAX_ANNOUNCED_LABELS = 32
MAX_SAMPLE_LABELS = 64
MAX_RULES = 200
LabelValue = Annotated[str, NoNul, Field(max_length=256)]


class ObservationIn(BaseModel):
    """One application's aggregates over one window, pushed by an agent that aggregates itself."""

    model_config = ConfigDict(extra="forbid")

    window_start: Moment
    window_end: Moment
    values: MetricValues
    instance_count: Count32

    @model_validator(mode="after")
    def window_is_ordered(self) -> "ObservationIn":
        if self.window_start.tzinfo is None or self.window_end.tzinfo is None:
            raise ValueError("window_start and window_end need a timezone (e.g. 'Z')")
        if self.window_end <= self.window_start:
            raise ValueError("window_end must be after window_start")
        return self

    @field_validator("values")
    @classmethod
    def values_are_bounded(cls, values: MetricValues) -> MetricValues:
        for name, value in values.model_dump().items():
            if isinstance(value, float) and not -FLOAT_MAX <= value <= FLOAT_MAX:
                raise ValueError(f"{name}: {value} is not a finite number up to {FLOAT_MAX:g}")
            if isinstance(value, int) and value > INT32_MAX:
                raise ValueError(f"{name}: {value} is more than {INT32_MAX}")
        return values


class ObservationOut(BaseModel):
    """A recorded observation and the event that announced it."""

    app: str
    window_start: datetime
    window_end: datetime
    values: MetricValues
    instance_count: int
    event_id: str
    recorded_by: str
    created: bool = Field(description="false when this window was already recorded")


class TargetOut(BaseModel):
    """One discovered target and the state of its last scrape."""

    instance_id: str
    app: str
    url: str
    labels: dict[str, str]
    discovered_at: datetime
    up: bool | None = Field(description="null until the first scrape")
    last_scrape_at: datetime | None
    duration_s: float | None
    last_error: str | None
    series: int
    dropped: int
    source: Literal["sd", "announced"] = Field(
        description="sd: from the CMDB's service discovery; announced: by a deployer"
    )


class Point(BaseModel):
    """One step of a range query."""

    window_start: datetime
    window_end: datetime
    value: float | None


class RangeOut(BaseModel):
    """A metric of one application over time, one point per step."""

    app: str
    metric: Metric
    step_s: float
    points: list[Point]


class SampleIn(BaseModel):
    """One pushed sample: a metric name, its labels and its value."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$", max_length=200)
    labels: dict[str, LabelValue] = Field(default_factory=dict, max_length=MAX_SAMPLE_LABELS)
    value: Finite

    @model_validator(mode="after")
    def labels_are_named_well(self) -> "SampleIn":
        for label in self.labels:
            if not _LABEL.match(label):
                raise ValueError(f"label name {label!r} is not a valid Prometheus label name")
        return self


class PushIn(BaseModel):
    """A batch of samples pushed by an agent or batch job for one application's instance."""

    model_config = ConfigDict(extra="forbid")

    app: str = Field(pattern=APP_ID_PATTERN, max_length=128)
    instance: Annotated[str, NoNul, Field(min_length=1, max_length=200)]
    samples: list[SampleIn] = Field(min_length=1)


class PushOut(BaseModel):
    """What a push stored."""

    app: str
    instance: str
    at: datetime
    series: int


class ThresholdRuleIn(BaseModel):
    """Fires while a metric is past a threshold for `for_seconds`; clears past `clear_threshold`."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["threshold"] = "threshold"
    name: str = Field(pattern=_RULE_NAME, max_length=200)
    metric: Metric
    op: Op
    threshold: Finite
    for_seconds: Seconds = 0.0
    clear_threshold: Finite | None = None
    clear_seconds: Seconds = 0.0
    severity: Severity = "warning"


class BurnRateRuleIn(BaseModel):
    """Fires when an SLO's error budget burns at `burn_rate` or faster over both windows."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["burn_rate"] = "burn_rate"
    name: str = Field(pattern=_RULE_NAME, max_length=200)
    objective: float = Field(gt=0, lt=1)
    short_window_seconds: PositiveSeconds
    long_window_seconds: PositiveSeconds
    burn_rate: Annotated[Finite, Field(gt=0)]
    clear_burn_rate: Annotated[Finite, Field(gt=0)] | None = None
    for_seconds: Seconds = 0.0
    clear_seconds: Seconds = 0.0
    latency_threshold_ms: Annotated[Finite, Field(gt=0)] | None = None
    severity: Severity = "critical"


class SloRulesIn(BaseModel):
    """An SLO of the application's spec, expanded into the SRE workbook's fast and slow burns."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["slo"] = "slo"
    objective: float = Field(gt=0, lt=1, description="e.g. 0.999 from spec.slo.availability")
    latency_threshold_ms: Annotated[Finite, Field(gt=0)] | None = Field(
        None, description="spec.slo.latency_p99_ms"
    )


RuleIn = Annotated[ThresholdRuleIn | BurnRateRuleIn | SloRulesIn, Field(discriminator="kind")]


class RulesIn(BaseModel):
    """The complete set of an application's alert rules (replaces the previous set)."""

    model_config = ConfigDict(extra="forbid")

    rules: list[RuleIn] = Field(max_length=MAX_RULES)


class RuleOut(BaseModel):
    """One stored rule in its expanded form."""

    name: str
    spec: dict[str, Any]


class RulesOut(BaseModel):
    """An application's alert rules."""

    app: str
    rules: list[RuleOut]


class AlertOut(BaseModel):
    """One alert, firing or resolved."""

    alert_id: str
    app: str
    rule: str
    state: Literal["firing", "resolved"]
    severity: str
    value: float | None
    threshold: float
    summary: str
    raised_at: datetime
    resolved_at: datetime | None


class AnnouncedTargetIn(BaseModel):
    """One instance to scrape before the CMDB lists it (a rollout's new batch)."""

    model_config = ConfigDict(extra="forbid")

    instance_id: str = Field(pattern=INSTANCE_ID_PATTERN, max_length=200)
    endpoint: HostPort
    version: str = Field(pattern=_PRINTABLE, max_length=128)
    zone: str = Field(pattern=_PRINTABLE, max_length=128)
    labels: dict[str, LabelValue] = Field(default_factory=dict, max_length=MAX_ANNOUNCED_LABELS)
    metrics_path: str = Field("/metrics", pattern=_METRICS_PATH, max_length=200)

    @field_validator("labels")
    @classmethod
    def labels_are_named_well(cls, labels: dict[str, str]) -> dict[str, str]:
        for name in labels:
            if not _LABEL.match(name) or name.startswith("__"):
                raise ValueError(f"label name {name!r} is not a valid, non-reserved label name")
        return labels


class AnnounceIn(BaseModel):
    """Instances to scrape for `ttl_seconds` (refreshed when announced again)."""

    model_config = ConfigDict(extra="forbid")

    targets: list[AnnouncedTargetIn] = Field(min_length=1, max_length=1000)
    ttl_seconds: float = Field(600.0, ge=1, le=3600, description="default 10 minutes")


class WithdrawIn(BaseModel):
    """Announced instances that stopped (a rollout rolled back, an instance was replaced)."""

    model_config = ConfigDict(extra="forbid")

    instance_ids: list[Annotated[str, Field(pattern=INSTANCE_ID_PATTERN, max_length=200)]] = Field(
        min_length=1, max_length=1000
    )


class WithdrawnOut(BaseModel):
    """What a withdrawal found announced (and now no longer scrapes, unless the CMDB lists it)."""

    app: str
    withdrawn: list[str]


class AnnouncedTargetOut(BaseModel):
    """One announced instance, scraped until `expires_at` or until the CMDB lists it."""

    instance_id: str
    app: str
    endpoint: str
    metrics_path: str
    version: str
    zone: str
    labels: dict[str, str]
    announced_by: str
    announced_at: datetime
    expires_at: datetime


class AnnouncedOut(BaseModel):
    """An application's announced instances that have not expired."""

    app: str
    scrape_interval_s: float = Field(description="the monitor's interval (and window length)")
    targets: list[AnnouncedTargetOut]


class AuditOut(BaseModel):
    """Who replaced an application's alert rules or withdrew its announced targets, and when."""

    at: datetime
    actor: str
    action: str
    app: str
    detail: str
