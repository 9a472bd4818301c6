"""Which consumed event becomes which handler call.

Offsets are committed only after the database transaction that applied the event and recorded
its id in the inbox (`ooda.consumer.EventConsumer`), so a redelivery changes nothing; a scale
decision re-sent under a new event id is caught by the outcome's unique decision id.
"""

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from elastic.cmdb import CmdbClient
from elastic.handlers import decide_scale, learn_from_deploy
from ooda.events import Event, spec_for_payload
from ooda.events.contracts import DeployDone, ScaleDecided
from ooda.service import Runtime, Subscription


def subscriptions_with(cmdb: CmdbClient) -> Callable[[Runtime], list[Subscription]]:
    """Elastic applies `scale-decided` within policy and learns state from `deploy-done`."""

    def subscriptions(rt: Runtime) -> list[Subscription]:
        decided = spec_for_payload(ScaleDecided)
        done = spec_for_payload(DeployDone)

        async def on_scale_decided(session: AsyncSession, event: Event) -> None:
            await decide_scale(session, rt.outbox, cmdb, event, datetime.now(UTC))

        return [
            Subscription(
                topics=[decided.topic, done.topic],
                handlers={decided.type: on_scale_decided, done.type: learn_from_deploy},
            )
        ]

    return subscriptions
