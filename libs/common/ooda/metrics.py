"""Prometheus metrics of the messaging plumbing, shared by every service."""

from prometheus_client import Counter, Gauge, Histogram

OUTBOX_BACKLOG = Gauge(
    "ooda_outbox_backlog", "Outbox rows written but not yet published", ["service"]
)
OUTBOX_PUBLISHED = Counter(
    "ooda_outbox_published_total", "Outbox rows published to Kafka", ["service", "topic"]
)
OUTBOX_DELAY = Histogram(
    "ooda_outbox_publish_delay_seconds",
    "Time from the database commit of an event to its acknowledgement by Kafka",
    ["service"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CONSUMED = Counter(
    "ooda_consumer_messages_total",
    "Consumed messages by outcome (handled, duplicate, ignored, dead_lettered)",
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
