"""The monitor's own Prometheus metrics, and the latest per-application aggregates as gauges."""

from collections.abc import Iterator
from threading import Lock

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from monitor.domain import AppRollup, Metric

SCRAPE_DURATION = Histogram(
    "ooda_monitor_scrape_duration_seconds",
    "Time to fetch one target's exposition",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ROUND_DURATION = Histogram(
    "ooda_monitor_round_duration_seconds",
    "Time of one round: scrape every target, aggregate, publish",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TARGETS = Gauge("ooda_monitor_targets", "Discovered targets", ["app"])
TARGETS_UP = Gauge("ooda_monitor_targets_up", "Targets whose last scrape succeeded", ["app"])
SCRAPE_FAILURES = Counter(
    "ooda_monitor_scrape_failures_total", "Scrapes that failed (down or malformed)", ["app"]
)
AGGREGATION_FAILURES = Counter(
    "ooda_monitor_aggregation_failures_total",
    "Windows of an application that could not be aggregated (logged; the others published)",
    ["app"],
)
DROPPED_SERIES = Counter(
    "ooda_monitor_dropped_series_total", "Series dropped by the per-target series cap", ["app"]
)
WINDOWS_PUBLISHED = Counter(
    "ooda_monitor_windows_published_total", "metric-observed windows published", ["app"]
)


class LatestAggregates(Collector):
    """Exposes each application's newest rollup as `ooda_app_<metric>{app=...}` gauges."""

    def __init__(self) -> None:
        self._lock = Lock()
        self._latest: dict[str, AppRollup] = {}

    def update(self, rollups: list[AppRollup]) -> None:
        """Remember the newest rollup of each application."""
        with self._lock:
            for rollup in rollups:
                held = self._latest.get(rollup.app_id)
                if held is None or held.window_end <= rollup.window_end:
                    self._latest[rollup.app_id] = rollup

    def forget(self, apps: set[str]) -> None:
        """Stop exposing applications that are no longer observed."""
        with self._lock:
            for app in apps:
                self._latest.pop(app, None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            latest = list(self._latest.values())
        for metric in Metric:
            family = GaugeMetricFamily(
                f"ooda_app_{metric.value}",
                f"Latest {metric.value} of each application",
                labels=["app"],
            )
            for rollup in latest:
                value = rollup.value(metric)
                if value is not None:
                    family.add_metric([rollup.app_id], value)
            yield family
        instances = GaugeMetricFamily(
            "ooda_app_instances", "Instances scraped in the latest window", labels=["app"]
        )
        staleness = GaugeMetricFamily(
            "ooda_app_staleness_seconds", "Age of the newest sample when published", labels=["app"]
        )
        for rollup in latest:
            instances.add_metric([rollup.app_id], rollup.instance_count)
            staleness.add_metric([rollup.app_id], rollup.staleness_s)
        yield instances
        yield staleness


LATEST = LatestAggregates()
REGISTRY.register(LATEST)
