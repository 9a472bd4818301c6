"""Value objects of the pipeline: what a change targets, where instances run, what a plan does."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ValueObject(BaseModel):
    """An immutable value compared by its fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ChangeKind(StrEnum):
    """What a change does to an application's instances."""

    DEPLOY = "deploy"
    SCALE = "scale"
    MIGRATE = "migrate"
    RESTART = "restart"
    ROLLBACK = "rollback"


class CauseKind(StrEnum):
    """Whether a change comes from an event of the loop or from a request."""

    EVENT = "event"
    REQUEST = "request"


class InstanceStatus(StrEnum):
    """How an instance is doing; only running instances serve."""

    STARTING = "starting"
    RUNNING = "running"
    UNHEALTHY = "unhealthy"
    STOPPED = "stopped"


class CanaryResume(StrEnum):
    """How the pause after a canary batch ends."""

    AUTO = "auto"
    MANUAL = "manual"


class Cause(ValueObject):
    """What led to a change: an event (the loop acted on its own) or a request (a person or CI)."""

    kind: CauseKind
    id: str

    @property
    def automated(self) -> bool:
        """Whether the change comes from the loop rather than from a person."""
        return self.kind is CauseKind.EVENT


class Resources(ValueObject):
    """An amount of cpu (cores) and memory (MiB)."""

    cpu: float = Field(ge=0)
    memory_mb: int = Field(ge=0)

    @property
    def millicpu(self) -> int:
        """Cpu in thousandths of a core, so sums stay exact."""
        return round(self.cpu * 1000)


class Host(ValueObject):
    """A machine that can run instances, with the room it has left."""

    id: str
    zone: str
    pool: str
    free: Resources


class Instance(ValueObject):
    """One running copy of an application on a host."""

    id: str
    version: str
    host: str
    zone: str
    status: InstanceStatus = InstanceStatus.RUNNING


class Placement(ValueObject):
    """Where instances may run: the allowed pools and zones; empty means anywhere."""

    pools: frozenset[str] = frozenset()
    zones: frozenset[str] = frozenset()

    @property
    def anywhere(self) -> bool:
        """Whether the placement restricts nothing."""
        return not self.pools and not self.zones

    def allows(self, zone: str, pool: str | None) -> bool:
        """Whether an instance may run in this zone and pool (an unknown pool fails a pool rule)."""
        return (not self.zones or zone in self.zones) and (not self.pools or pool in self.pools)


class Target(ValueObject):
    """What a change converges to; each kind reads the fields it needs."""

    version: str | None = None
    replicas: int | None = Field(default=None, ge=0)
    placement: Placement = Placement()
    revision: int | None = Field(default=None, ge=0)


class Canary(ValueObject):
    """The first batch as a canary, followed by a pause that ends after `delay` or on resume."""

    instances: int = Field(default=1, ge=1)
    resume: CanaryResume = CanaryResume.MANUAL
    delay: timedelta = timedelta(0)


class BatchSpec(ValueObject):
    """How to cut a change into batches: by count or by percent of its units of work."""

    size: int | None = Field(default=None, ge=1)
    percent: int | None = Field(default=None, ge=1, le=100)
    canary: Canary | None = None
    max_unavailable: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _one_way_of_sizing(self) -> BatchSpec:
        if (self.size is None) == (self.percent is None):
            raise ValueError("give the batch size either as a count or as a percent, not both")
        return self

    def batch_size(self, units: int) -> int:
        """Units of work per batch (after the canary) for a change of `units` units."""
        if self.size is not None:
            return self.size
        assert self.percent is not None
        return max(1, math.ceil(units * self.percent / 100))


class StartInstance(ValueObject):
    """Start a new instance of a version on a host; `replaces` names the instance it takes over."""

    instance_id: str
    version: str
    host: str
    zone: str
    replaces: str | None = None


class StopInstance(ValueObject):
    """Stop an instance; its version and place are kept so the stop can be undone."""

    instance_id: str
    version: str
    host: str
    zone: str


class Batch(ValueObject):
    """One step of a plan, run in order: `stop_first`, `start` (and wait healthy), then `stop`."""

    number: int = Field(ge=1)
    stop_first: tuple[StopInstance, ...] = ()
    start: tuple[StartInstance, ...] = ()
    stop: tuple[StopInstance, ...] = ()


class Plan(ValueObject):
    """The batches of a rollout (or of its rollback) and the settings they were cut with."""

    batches: tuple[Batch, ...]
    batch_size: int = Field(ge=1)
    max_unavailable: int = Field(ge=0)
    min_running: int = Field(
        default=0,
        ge=0,
        description="fewest running instances the rollout allows; a rollback allows any",
    )
    canary: Canary | None = None
    rollback: bool = False
    version: str | None = Field(default=None, description="the version a deploy brings in")
    previous_version: str | None = Field(
        default=None, description="the version a rollback of this deploy returns to"
    )


class Pin(ValueObject):
    """A rolled-back declared state that the loop must not re-apply until the spec changes."""

    application: str
    revision: int | None
    version: str | None
    reason: str
    change_id: str
    pinned_at: datetime

    def lifted_by(self, revision: int | None) -> bool:
        """Whether a declared spec at `revision` is newer than the pinned one, so the pin ends."""
        return revision is not None and (self.revision is None or revision > self.revision)
