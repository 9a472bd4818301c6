"""Which consumed event becomes which handler call.

Offsets are committed only after the database transaction that created the change and recorded
the event id in the inbox (`ooda.consumer.EventConsumer`); the change's unique request id makes a
repeated request harmless even under a new event id. An invalid request is a PermanentError, so
it goes to the dead-letter topic with the reason.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from ooda.consumer import PermanentError
from ooda.events import Event, spec_for_payload
from ooda.events.contracts import ChangeRequested, ChangeTarget
from ooda.service import Runtime, Subscription
from pipeline.artifacts import ArtifactError, normalise_digest
from pipeline.domain import (
    BatchSpec,
    Cause,
    CauseKind,
    ChangeKind,
    DomainError,
    Placement,
    Target,
)
from pipeline.executor import utcnow
from pipeline.handlers import RequestChange, request_change


def target_of(target: ChangeTarget) -> Target:
    """The domain target of a requested change."""
    return Target(
        version=target.version,
        replicas=target.replicas,
        revision=target.revision,
        placement=Placement(
            pools=frozenset({target.to_pool} if target.to_pool else ()),
            zones=frozenset({target.to_zone} if target.to_zone else ()),
        ),
    )


def subscriptions_for(
    batch_percent: int, wake: Callable[[], None]
) -> Callable[[Runtime], list[Subscription]]:
    """The pipeline consumes `change-requested`; `wake` nudges the executor after each one."""

    def subscriptions(rt: Runtime) -> list[Subscription]:
        requested = spec_for_payload(ChangeRequested)

        async def on_change_requested(session: AsyncSession, event: Event) -> None:
            req = event.data
            assert isinstance(req, ChangeRequested)
            if req.emergency:
                # Only an admin marks an emergency, through the API; no producer on the bus
                # does, so a record claiming one was forged or replayed by someone else.
                raise PermanentError(
                    f"change request {req.request_id}: an emergency is requested by an admin "
                    "through the pipeline's API (POST /v1/changes), never on the bus"
                )
            try:
                cmd = RequestChange(
                    app=req.app,
                    kind=ChangeKind(req.kind),
                    request_id=req.request_id,
                    target=target_of(req.target),
                    batch=BatchSpec(percent=batch_percent),
                    actor=req.requested_by,
                    cause=Cause(kind=CauseKind.EVENT, id=event.id),
                    cause_text=req.cause or event.id,
                    artifact=normalise_digest(req.target.artifact) if req.target.artifact else None,
                    reason=req.reason,
                    emergency=req.emergency,
                )
                await request_change(session, rt.outbox, cmd, utcnow())
            except (DomainError, ValidationError, ValueError, ArtifactError) as error:
                raise PermanentError(f"invalid change request {req.request_id}: {error}") from error
            wake()

        return [
            Subscription(topics=[requested.topic], handlers={requested.type: on_change_requested})
        ]

    return subscriptions
