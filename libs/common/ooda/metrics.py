"""Prometheus metrics of the messaging plumbing, shared by every service, and the collector of
metrics derived from a service's stored state."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ooda.service import Runtime

log = logging.getLogger(__name__)

OUTBOX_BACKLOG = Gauge(
    "ooda_outbox_backlog", "Outbox rows written but not yet published", ["service"]
)
OUTBOX_PUBLISHED = Counter(
    "ooda_outbox_published_total", "Outbox rows published to Kafka", ["service", "topic"]
)
OUTBOX_PARKED = Counter(
    "ooda_outbox_parked_total",
    "Outbox rows the broker refused for what they are (e.g. too large), parked and skipped",
    ["service", "topic"],
)
OUTBOX_DELAY = Histogram(
    "ooda_outbox_publish_delay_seconds",
    "Time from the database commit of an event to its acknowledgement by Kafka",
    ["service"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CONSUMED = Counter(
    "ooda_consumer_messages_total",
    "Consumed messages by outcome (handled, duplicate, ignored, dead_lettered, skipped)",
    ["service", "topic", "outcome"],
)
CONSUMER_FAILURES = Counter(
    "ooda_consumer_failures_total", "Handler attempts that raised", ["service", "topic"]
)
CONSUMER_LAG = Gauge(
    "ooda_consumer_lag",
    "Records behind the end of the partition",
    ["service", "topic", "partition"],
)
HANDLE_SECONDS = Histogram(
    "ooda_consumer_handle_seconds",
    "Time to handle one fetched batch, database commit included",
    ["service"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class StoredStateMetrics(Collector):
    """Metric families computed from a service's stored state, served as a snapshot.

    A task of the service (`start`, an `on_start` hook) calls `read` every `every_s` seconds and
    `/metrics` serves the newest result, so the values are the database's whatever the process has
    seen, the same after a restart, and a scrape never waits for a query. A failed read keeps the
    last snapshot.
    """

    def __init__(
        self,
        what: str,
        read: Callable[[Runtime], Awaitable[list[Metric]]],
        every_s: float = 5.0,
    ) -> None:
        self.what = what
        self.read = read
        self.every_s = every_s
        self._families: list[Metric] = []

    def collect(self) -> Iterator[Metric]:
        yield from self._families

    async def refresh(self, rt: Runtime) -> None:
        """Replace the snapshot with a fresh read."""
        self._families = await self.read(rt)

    async def run(self, rt: Runtime) -> None:
        """Refresh every `every_s` seconds until cancelled."""
        while True:
            try:
                await self.refresh(rt)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("refreshing the %s metrics failed", self.what)
            await asyncio.sleep(self.every_s)

    async def start(self, rt: Runtime) -> None:
        """The `on_start` hook: run the refresh task with the service's runtime."""
        rt.tasks.append(asyncio.create_task(self.run(rt)))
