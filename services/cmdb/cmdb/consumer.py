"""Which consumed event becomes which handler call.

`deploy-done` carries an application's complete instance set; the cmdb applies it as one change
set attributed to `event:<source>` with the event id as cause. Offsets are committed only after
the database transaction that applied the event and recorded its id in the inbox
(`ooda.consumer.EventConsumer`), so a redelivery changes nothing; a replayed or older `sequence`
is ignored by the per-application watermark, and the change request that drift causes is made
at most once per spec revision and kind (a unique key). Malformed events go to the dead letters,
and so does a `sequence` too far past the applied one to be the pipeline's (`max_sequence_gap`):
it would otherwise become the watermark and hide every genuine report after it.
"""

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from cmdb.config import Settings
from cmdb.domain import MAX_SEQUENCE_GAP
from cmdb.handlers import apply_deploy_done
from ooda.consumer import Handler
from ooda.events import Event, spec_for_payload
from ooda.events.contracts import DeployDone
from ooda.outbox import Outbox
from ooda.service import Runtime, Subscription


def on_deploy_done(outbox: Outbox, max_gap: int = MAX_SEQUENCE_GAP) -> Handler:
    """The handler applying one `deploy-done` through the service's outbox."""

    async def handle(session: AsyncSession, event: Event) -> None:
        await apply_deploy_done(session, outbox, event, datetime.now(UTC), max_gap)

    return handle


def subscriptions(rt: Runtime) -> list[Subscription]:
    """The cmdb learns what really runs from `deploy-done`."""
    done = spec_for_payload(DeployDone)
    settings = rt.settings
    max_gap = settings.max_sequence_gap if isinstance(settings, Settings) else MAX_SEQUENCE_GAP
    handle = on_deploy_done(rt.outbox, max_gap)
    return [Subscription(topics=[done.topic], handlers={done.type: handle})]
