"""Which consumed event becomes which handler call.

Offsets are committed only after the database transaction that applied the event and recorded
its id in the inbox (`ooda.consumer.EventConsumer`), so a redelivery changes nothing; decisions
are keyed by (application, window), so a window is decided once.
"""

from collections.abc import Callable
from functools import partial

from decision.cmdb import SpecSource
from decision.config import Settings
from decision.engine import Engine
from decision.handlers import learn_from_deploy, observe_and_decide
from ooda.consumer import batched
from ooda.events import DeployDone, MetricObserved, spec_for_payload
from ooda.service import Runtime, Subscription


def subscriptions(
    engine: Engine, specs: SpecSource, settings: Settings
) -> Callable[[Runtime], list[Subscription]]:
    """The decision center learns load from `metric-observed` and delays from `deploy-done`."""

    def build(rt: Runtime) -> list[Subscription]:
        observed = spec_for_payload(MetricObserved)
        done = spec_for_payload(DeployDone)
        decide = partial(
            observe_and_decide,
            engine=engine,
            specs=specs,
            outbox=rt.outbox,
            fresh_windows=settings.fresh_windows,
        )
        return [
            Subscription(
                topics=[observed.topic, done.topic],
                handlers={
                    observed.type: batched(decide),
                    done.type: partial(learn_from_deploy, engine=engine),
                },
            )
        ]

    return build
