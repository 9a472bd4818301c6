"""Which consumed event becomes which handler call.

`cmdb-changed` only asks the monitor to re-read service discovery at once; it writes nothing, so
a redelivery is harmless. Offsets are committed after the inbox records the event id
(`ooda.consumer.EventConsumer`).
"""

from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession

from monitor.loops import Monitor
from ooda.events import Event, spec_for_payload
from ooda.events.contracts import CmdbChanged
from ooda.service import Runtime, Subscription


def subscriptions_for(monitor: Monitor) -> Callable[[Runtime], list[Subscription]]:
    """The monitor re-reads its targets whenever the CMDB says something changed."""

    async def on_cmdb_changed(session: AsyncSession, event: Event) -> None:
        monitor.request_refresh()

    def subscriptions(rt: Runtime) -> list[Subscription]:
        changed = spec_for_payload(CmdbChanged)
        return [Subscription(topics=[changed.topic], handlers={changed.type: on_cmdb_changed})]

    return subscriptions
