"""Request and response models of the pipeline's HTTP API."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ooda.bounds import Count32, LongText, NoNul
from ooda.events.contracts import APP_ID_PATTERN
from pipeline.domain import BatchSpec, Canary, CanaryResume

SHA256_PATTERN = r"^\s*([sS][hH][aA]256:)?[0-9a-fA-F]{64}\s*$"
MAX_REPLICAS = 10_000


class TargetIn(BaseModel):
    """What the change converges to; each kind reads the fields it needs."""

    model_config = ConfigDict(extra="forbid")

    version: Annotated[str, NoNul, Field(max_length=128)] | None = None
    artifact: str | None = Field(
        None, pattern=SHA256_PATTERN, description="sha256 digest of an uploaded artifact"
    )
    replicas: int | None = Field(None, ge=0, le=MAX_REPLICAS)
    to_zone: Annotated[str, NoNul, Field(max_length=128)] | None = None
    to_pool: Annotated[str, NoNul, Field(max_length=128)] | None = None
    revision: Count32 | None = None


class CanaryIn(BaseModel):
    """The first batch as a canary, then a pause: automatic after `delay_seconds`, or manual."""

    model_config = ConfigDict(extra="forbid")

    instances: int = Field(1, ge=1, le=MAX_REPLICAS)
    resume: CanaryResume = CanaryResume.MANUAL
    delay_seconds: float = Field(0, ge=0, le=86_400)


class BatchIn(BaseModel):
    """How to cut the change into batches: `size` (count) or `percent`, not both."""

    model_config = ConfigDict(extra="forbid")

    size: int | None = Field(None, ge=1, le=MAX_REPLICAS)
    percent: int | None = Field(None, ge=1, le=100)
    canary: CanaryIn | None = None
    max_unavailable: int = Field(0, ge=0, le=MAX_REPLICAS)

    def to_domain(self) -> BatchSpec:
        """The domain batch spec (raises ValueError when it is invalid)."""
        canary = None
        if self.canary is not None:
            canary = Canary(
                instances=self.canary.instances,
                resume=self.canary.resume,
                delay=timedelta(seconds=self.canary.delay_seconds),
            )
        return BatchSpec(
            size=self.size,
            percent=self.percent,
            canary=canary,
            max_unavailable=self.max_unavailable,
        )


class ChangeIn(BaseModel):
    """A release or other change asked for over HTTP; `idempotency_key` makes retries safe."""

    model_config = ConfigDict(extra="forbid")

    app: str = Field(pattern=APP_ID_PATTERN, max_length=128)
    kind: Literal["deploy", "scale", "migrate", "restart", "rollback"]
    idempotency_key: Annotated[str, NoNul, Field(min_length=1, max_length=200)]
    target: TargetIn = TargetIn()
    batch: BatchIn | None = None
    reason: LongText = ""
    emergency: bool = False


class ActionIn(BaseModel):
    """Why a change is paused, aborted or rolled back."""

    model_config = ConfigDict(extra="forbid")

    reason: LongText = ""


class ChangeOut(BaseModel):
    """A change as stored: its state, position, plan and progress."""

    id: str
    app: str
    request_id: str
    kind: str
    state: str
    position: str
    reason: str
    actor: str
    cause: str | None
    emergency: bool
    artifact: str | None
    target: dict[str, Any]
    batch: dict[str, Any]
    rollout: dict[str, Any] | None
    rollback: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ChangeList(BaseModel):
    """A page of changes, newest first."""

    items: list[ChangeOut]


class FreezeIn(BaseModel):
    """Declare a global freeze of releases."""

    model_config = ConfigDict(extra="forbid")

    reason: Annotated[LongText, Field(min_length=1)]
    until: datetime | None = None


class FreezeOut(BaseModel):
    """The global freeze, if any."""

    frozen: bool
    reason: str | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class WindowsIn(BaseModel):
    """An application's weekly UTC change windows, e.g. 'Mon-Fri 09:00-17:00 UTC'."""

    model_config = ConfigDict(extra="forbid")

    windows: list[Annotated[str, NoNul, Field(max_length=200)]] = Field(max_length=50)


class WindowsOut(BaseModel):
    """An application's change windows (empty: any time)."""

    app: str
    windows: list[str]


class InstanceOut(BaseModel):
    """An instance the pipeline manages."""

    id: str
    app: str
    change_id: str | None
    version: str
    artifact: str
    host: str
    zone: str
    endpoint: str | None
    pid: int | None
    status: str
    started_at: datetime | None
    ready_at: datetime | None
    stopped_at: datetime | None


class ArtifactOut(BaseModel):
    """An artifact in the content-addressed store."""

    sha256: str
    name: str
    size: int
    uploaded_by: str
    created_at: datetime
    team: str | None = Field(None, description="the team whose quota it counts against")


class CollectedOut(BaseModel):
    """What one round of the artifact collector deleted."""

    collected: list[str] = Field(description="digests of the artifacts deleted")
    bytes: int = Field(description="their total size")
    stray_files: int = Field(description="files of the store no artifact record named")


class AuditOut(BaseModel):
    """One use of an operator control: who, when, what, on which application (none: all)."""

    at: datetime
    actor: str
    action: str
    app: str | None
    detail: str
