"""Which consumed event becomes which handler call.

Offsets are committed only after the database transaction that applied the event and recorded
its id in the inbox (`ooda.consumer.EventConsumer`), so a redelivery changes nothing.
"""

from decision.handlers import remember_observations
from ooda.consumer import batched
from ooda.events import spec_for_payload
from ooda.events.contracts import MetricObserved
from ooda.service import Runtime, Subscription


def subscriptions(rt: Runtime) -> list[Subscription]:
    """The decision center learns load from `metric-observed`."""
    observed = spec_for_payload(MetricObserved)
    return [
        Subscription(
            topics=[observed.topic], handlers={observed.type: batched(remember_observations)}
        )
    ]
