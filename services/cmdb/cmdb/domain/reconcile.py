"""Closing the loop: drift between a declared spec and reality; applying reported instance sets."""

import uuid
from collections.abc import Sequence
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from cmdb.domain.items import ApplicationSpec, Identifier, Instance

ChangeKind = Literal["deploy", "scale"]
_REQUEST_NAMESPACE = uuid.UUID("6f1d7c1e-3a54-4c36-9a53-0c2f4f7f8b10")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def idempotency_key(app_id: str, spec_revision: int, kind: ChangeKind) -> str:
    """The key that makes a change request for one spec revision and kind happen exactly once."""
    return f"cmdb/{app_id}/spec-{spec_revision}/{kind}"


class RequestedChange(_Frozen):
    """A change the CMDB asks the pipeline for, caused by a spec revision."""

    app_id: str
    kind: ChangeKind
    spec_revision: int
    version: str
    replicas: int
    reason: str

    @property
    def idempotency_key(self) -> str:
        """The key under which this request is published exactly once."""
        return idempotency_key(self.app_id, self.spec_revision, self.kind)

    @property
    def request_id(self) -> uuid.UUID:
        """A stable id derived from the idempotency key, the same on every retry."""
        return uuid.uuid5(_REQUEST_NAMESPACE, self.idempotency_key)


def detect_drift(spec: ApplicationSpec, instances: Sequence[Instance]) -> RequestedChange | None:
    """The change that brings the application's live instances back inside its spec, if any."""
    live = [i for i in instances if i.app_id == spec.id and i.is_live]
    count = len(live)
    bounds = spec.replicas
    within = min(max(count, bounds.min), bounds.max)
    wrong_versions = sorted({i.version for i in live if i.version != spec.version})
    if wrong_versions:
        return RequestedChange(
            app_id=spec.id,
            kind="deploy",
            spec_revision=spec.revision,
            version=spec.version,
            replicas=within,
            reason=f"running version {', '.join(wrong_versions)}, spec says {spec.version}",
        )
    if count == 0 and bounds.min > 0:
        return RequestedChange(
            app_id=spec.id,
            kind="deploy",
            spec_revision=spec.revision,
            version=spec.version,
            replicas=bounds.desired,
            reason=f"no live instances, spec asks for {bounds.desired}",
        )
    if count != within:
        return RequestedChange(
            app_id=spec.id,
            kind="scale",
            spec_revision=spec.revision,
            version=spec.version,
            replicas=within,
            reason=f"{count} live instances, outside bounds {bounds.min}..{bounds.max}",
        )
    return None


class Watermark(_Frozen):
    """The (event time, sequence) of the newest instance set applied to an application."""

    event_time: AwareDatetime
    sequence: int = Field(ge=0)

    def is_newer_than(self, other: "Watermark") -> bool:
        """Whether this position comes strictly after `other`."""
        return (self.event_time, self.sequence) > (other.event_time, other.sequence)


class InstanceSetReport(_Frozen):
    """The full set of an application's instances as reported by a deployment (deploy-done)."""

    app_id: Identifier
    position: Watermark
    instances: tuple[Instance, ...]


class InstanceSetApplied(_Frozen):
    """The application's new instance set and what changed in it."""

    instances: tuple[Instance, ...]
    watermark: Watermark
    created: tuple[str, ...]
    updated: tuple[str, ...]
    removed: tuple[str, ...]


MAX_SEQUENCE_GAP = 100
"""How far past the applied sequence a deploy-done may be. The pipeline counts each application's
deploy-dones one by one (1, 2, 3, ...) and Kafka keeps one application's records in order, so
the CMDB sees every number in turn; a gap only opens where it dead-lettered (or never received)
some. A sequence further ahead was not made by the pipeline: applied, it would freeze the
application's instances, every genuine report after it being older."""


class ImplausibleSequenceError(ValueError):
    """A report's sequence jumps further past the applied one than the pipeline could have."""


class StaleInstanceSet(_Frozen):
    """A report that is older than (or the same as) what was already applied: ignore it."""

    reason: str


def apply_instance_set(
    current: Sequence[Instance],
    watermark: Watermark | None,
    report: InstanceSetReport,
    max_gap: int = MAX_SEQUENCE_GAP,
) -> InstanceSetApplied | StaleInstanceSet:
    """Replace an app's instances with a newer report; an older or replayed one changes nothing.

    A report whose sequence is more than `max_gap` past the applied one (0 before the first) is
    refused with ImplausibleSequenceError, and moves nothing: later genuine reports still apply.
    """
    strangers = sorted(i.id for i in (*current, *report.instances) if i.app_id != report.app_id)
    if strangers:
        raise ValueError(f"instances {', '.join(strangers)} do not belong to {report.app_id}")
    incoming = {i.id: i for i in report.instances}
    if len(incoming) != len(report.instances):
        raise ValueError(f"report for {report.app_id} lists an instance id twice")
    if watermark is not None and not report.position.is_newer_than(watermark):
        return StaleInstanceSet(
            reason=f"report at {report.position.event_time.isoformat()} "
            f"#{report.position.sequence} is not newer than the applied "
            f"{watermark.event_time.isoformat()} #{watermark.sequence}"
        )
    applied = watermark.sequence if watermark is not None else 0
    if report.position.sequence - applied > max_gap:
        raise ImplausibleSequenceError(
            f"deploy-done for {report.app_id}: sequence {report.position.sequence} is "
            f"{report.position.sequence - applied} past the applied {applied} (at most {max_gap}); "
            "the pipeline numbers an application's deploy-dones one by one, so it did not make this"
        )
    before = {i.id: i for i in current}
    return InstanceSetApplied(
        instances=tuple(sorted(report.instances, key=lambda i: i.id)),
        watermark=report.position,
        created=tuple(sorted(incoming.keys() - before.keys())),
        updated=tuple(sorted(k for k in incoming if k in before and incoming[k] != before[k])),
        removed=tuple(sorted(before.keys() - incoming.keys())),
    )
