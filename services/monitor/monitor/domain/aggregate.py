"""Per-application aggregates for one interval from its instances' two latest scrapes.

Counters become increases between an instance's previous and current snapshot (a drop means the
process restarted, so the current value is the increase since then, as Prometheus' rate() does),
divided by that instance's own scrape interval. Latency quantiles come from the SUM of the
instances' bucket increases, never from per-instance percentiles. CPU utilisation is the mean
CPU seconds per second of an instance over `cpu_request`, the cores each instance is granted.
"""

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from monitor.domain.histogram import Histogram
from monitor.domain.names import (
    BUCKET_BOUND_LABEL,
    CPU_SECONDS_TOTAL,
    ERROR_STATUS_PREFIX,
    IN_FLIGHT,
    LATENCY_BUCKET,
    READY,
    REQUESTS_TOTAL,
    START_TIME,
    STATUS_LABEL,
    Metric,
)
from monitor.domain.rollup import AppRollup, latency_quantiles_ms
from monitor.domain.scrape import SeriesKey, Snapshot

_READY_SERIES: SeriesKey = (READY, ())


def aggregate_app(
    app_id: str,
    previous: Sequence[Snapshot],
    current: Sequence[Snapshot],
    window_start: datetime,
    window_end: datetime,
    now: datetime,
    cpu_request: float = 1.0,
) -> AppRollup:
    """Aggregate one application's instances over [window_start, window_end) as of `now`."""
    before_by_instance = {snapshot.instance_id: snapshot for snapshot in previous}
    request_rate = 0.0
    requests = 0.0
    errors = 0.0
    cpu_rates: list[float] = []
    buckets: dict[float, float] = {}
    in_flight = 0.0
    ready = 0
    rated = 0
    for snapshot in current:
        samples = snapshot.samples
        ready += samples.get(_READY_SERIES, 1.0) >= 1.0
        before = before_by_instance.get(snapshot.instance_id)
        if before is not None:
            elapsed = (snapshot.at - before.at).total_seconds()
            earlier = before.samples if elapsed > 0 else None
        else:
            earlier, elapsed = _since_start(snapshot, window_end - window_start)
        # A just-started instance counts for the load only: its first requests' latency, errors
        # and CPU are its warm-up, not a sign of load (as Kubernetes ignores a starting pod's
        # CPU for its initialization period).
        starting = before is None and earlier is not None
        instance_requests = 0.0
        instance_cpu: float | None = None
        for key, value in samples.items():
            name = key[0]
            if name == IN_FLIGHT:
                in_flight += value
            elif earlier is None or (starting and name != REQUESTS_TOTAL):
                continue
            elif name == REQUESTS_TOTAL:
                increase = _increase(earlier.get(key), value)
                instance_requests += increase
                if _label(key, STATUS_LABEL).startswith(ERROR_STATUS_PREFIX) and not starting:
                    errors += increase
            elif name == LATENCY_BUCKET:
                bound = _bucket_bound(key)
                if bound is not None:
                    buckets[bound] = buckets.get(bound, 0.0) + _increase(earlier.get(key), value)
            elif name == CPU_SECONDS_TOTAL:
                instance_cpu = (instance_cpu or 0.0) + _increase(earlier.get(key), value)
        if earlier is not None:
            rated += 1
            requests += 0.0 if starting else instance_requests
            request_rate += instance_requests / elapsed
            if instance_cpu is not None:
                cpu_rates.append(instance_cpu / elapsed)

    latency = Histogram.from_buckets(buckets)
    rate = request_rate if rated else None
    values: dict[Metric, float | None] = {
        Metric.REQUEST_RATE: rate,
        Metric.ERROR_RATE: errors / requests if requests > 0 else None,
        Metric.CPU_UTILISATION: (
            sum(cpu_rates) / len(cpu_rates) / cpu_request if cpu_rates else None
        ),
        Metric.IN_FLIGHT: in_flight if current else None,
        Metric.READY_INSTANCES: float(ready),
        Metric.LOAD_PER_INSTANCE: rate / ready if rate is not None and ready else None,
    }
    values.update(latency_quantiles_ms(latency))
    # With no sample in the window, the newest one is at least as old as the window's start.
    newest = max((snapshot.at for snapshot in current), default=window_start)
    return AppRollup(
        app_id=app_id,
        window_start=window_start,
        window_end=window_end,
        values=values,
        instance_count=len(current),
        staleness_s=max(0.0, (now - newest).total_seconds()),
        requests=requests,
        errors=errors,
        latency=latency,
    )


def _since_start(
    snapshot: Snapshot, window: timedelta
) -> tuple[dict[SeriesKey, float] | None, float]:
    """For an instance without an earlier scrape: zero counters at its start, when it started
    within the last two windows (it exposes `process_start_time_seconds`); else no rates."""
    start = next((v for (name, _), v in snapshot.samples.items() if name == START_TIME), None)
    if start is None or not math.isfinite(start):
        return None, 0.0
    elapsed = snapshot.at.timestamp() - start
    if 0 < elapsed <= 2 * window.total_seconds():
        return {}, elapsed
    return None, 0.0


def _increase(before: float | None, after: float) -> float:
    """Counter increase between two scrapes; a lower value means the counter restarted from 0."""
    # A series missing from the earlier scrape of a live instance had not been touched yet,
    # i.e. it was at zero (client libraries create labelled series on first use).
    if before is None or after < before:
        return after
    return after - before


def _label(key: SeriesKey, name: str) -> str:
    """One label's value of a series, empty when absent."""
    for label, value in key[1]:
        if label == name:
            return value
    return ""


def _bucket_bound(key: SeriesKey) -> float | None:
    """The upper bound of a bucket series, None when its `le` is not a number."""
    try:
        bound = float(_label(key, BUCKET_BOUND_LABEL))
    except ValueError:
        return None
    return None if math.isnan(bound) else bound
