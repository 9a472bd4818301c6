"""Per-application rollups: the value published as metric-observed, downsampling and retention.

Combining finer rollups into a coarser window: request rate, CPU, in-flight, ready instances and
load per instance are averaged by time over the parts that had a value; the error rate is the sum
of errors over the sum of requests; latency quantiles are recomputed from the summed histograms
(each rollup keeps its merged bucket increases), so they are never averaged; the instance count is
the largest seen and staleness is that of the newest part.
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from monitor.domain.histogram import Histogram, merge
from monitor.domain.names import Metric

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_QUANTILES = (
    (Metric.LATENCY_P50_MS, 0.5),
    (Metric.LATENCY_P95_MS, 0.95),
    (Metric.LATENCY_P99_MS, 0.99),
)
# Averaged by time over the windows that had a value; the rest are recomputed from kept sums.
_TIME_AVERAGED = (
    Metric.REQUEST_RATE,
    Metric.CPU_UTILISATION,
    Metric.IN_FLIGHT,
    Metric.READY_INSTANCES,
    Metric.LOAD_PER_INSTANCE,
)


def latency_quantiles_ms(latency: Histogram) -> dict[Metric, float | None]:
    """p50, p95 and p99 in milliseconds from a histogram in seconds; None without observations."""
    result: dict[Metric, float | None] = {}
    for metric, q in _QUANTILES:
        seconds = latency.quantile(q)
        result[metric] = None if seconds is None else seconds * 1000.0
    return result


@dataclass(frozen=True, slots=True)
class AppRollup:
    """One application's aggregates over one window; a None value means no data, never zero."""

    app_id: str
    window_start: datetime
    window_end: datetime
    values: dict[Metric, float | None]
    instance_count: int
    staleness_s: float
    # requests, errors and latency (merged bucket increases, in seconds) are kept so coarser
    # windows and SLO burn rates combine exactly instead of averaging ratios or percentiles.
    requests: float
    errors: float
    latency: Histogram

    @property
    def duration_s(self) -> float:
        """Length of the window in seconds."""
        return (self.window_end - self.window_start).total_seconds()

    def value(self, metric: Metric) -> float | None:
        """One aggregate, None when there was no data for it."""
        return self.values.get(metric)

    def as_payload(self) -> dict[str, Any]:
        """The metric-observed payload (ooda.events.MetricObserved) for this window."""
        values: dict[str, Any] = {metric.value: self.values.get(metric) for metric in Metric}
        ready = values[Metric.READY_INSTANCES.value]
        values[Metric.READY_INSTANCES.value] = None if ready is None else round(ready)
        return {
            "app": self.app_id,
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "values": values,
            "instance_count": self.instance_count,
            "staleness_s": self.staleness_s,
        }


def align(moment: datetime, step: timedelta) -> datetime:
    """The start of the `step`-long window, counted from the Unix epoch, that holds `moment`."""
    return _EPOCH + ((moment - _EPOCH) // step) * step


def combine(
    rollups: Sequence[AppRollup], window_start: datetime, window_end: datetime
) -> AppRollup:
    """Merge one application's rollups into one covering [window_start, window_end)."""
    if not rollups:
        raise ValueError("cannot combine no rollups")
    if len({r.app_id for r in rollups}) != 1:
        raise ValueError("cannot combine rollups of different applications")
    requests = sum(r.requests for r in rollups)
    errors = sum(r.errors for r in rollups)
    latency = merge(r.latency for r in rollups)
    values: dict[Metric, float | None] = {
        metric: _time_average(rollups, metric) for metric in _TIME_AVERAGED
    }
    values[Metric.ERROR_RATE] = errors / requests if requests > 0 else None
    values.update(latency_quantiles_ms(latency))
    newest = max(rollups, key=lambda r: r.window_end)
    return AppRollup(
        app_id=newest.app_id,
        window_start=window_start,
        window_end=window_end,
        values=values,
        instance_count=max(r.instance_count for r in rollups),
        staleness_s=newest.staleness_s,
        requests=requests,
        errors=errors,
        latency=latency,
    )


def _time_average(rollups: Sequence[AppRollup], metric: Metric) -> float | None:
    """Mean of one value weighted by window length, over the windows that had it."""
    weighted = 0.0
    seconds = 0.0
    for rollup in rollups:
        value = rollup.values.get(metric)
        if value is not None:
            weighted += value * rollup.duration_s
            seconds += rollup.duration_s
    return weighted / seconds if seconds > 0 else None


def downsample(rollups: Iterable[AppRollup], step: timedelta) -> list[AppRollup]:
    """Combine rollups into `step`-aligned windows per application, ordered by app then time."""
    groups: dict[tuple[str, datetime], list[AppRollup]] = defaultdict(list)
    for rollup in rollups:
        groups[(rollup.app_id, align(rollup.window_start, step))].append(rollup)
    return [
        combine(sorted(group, key=lambda r: r.window_start), start, start + step)
        for (_, start), group in sorted(groups.items())
    ]


@dataclass(frozen=True, slots=True)
class Tier:
    """Rollups of one resolution and how long they are kept."""

    step: timedelta
    keep: timedelta


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Resolutions from finest to coarsest; each tier is downsampled into the next one."""

    tiers: tuple[Tier, ...]

    def __post_init__(self) -> None:
        if not self.tiers:
            raise ValueError("a retention policy needs at least one tier")
        for finer, coarser in zip(self.tiers, self.tiers[1:], strict=False):
            if coarser.step <= finer.step or coarser.step % finer.step:
                raise ValueError(f"step {coarser.step} is not a coarser multiple of {finer.step}")
            # A finer rollup must outlive the coarser window it feeds, or it is deleted unmerged.
            if finer.keep < coarser.step:
                raise ValueError(f"tier {finer.step} must be kept at least {coarser.step}")


DEFAULT_RETENTION = RetentionPolicy(
    (
        Tier(timedelta(seconds=5), timedelta(hours=6)),
        Tier(timedelta(minutes=1), timedelta(days=7)),
        Tier(timedelta(minutes=10), timedelta(days=90)),
    )
)


@dataclass(frozen=True, slots=True)
class TierPlan:
    """One tier's due work: which of its rollups to downsample and which to delete."""

    step: timedelta
    # Rollups ending before delete_before are past retention; those ending before
    # downsample_before fill closed windows of the coarser step downsample_to.
    delete_before: datetime
    downsample_to: timedelta | None
    downsample_before: datetime | None


def plan_retention(policy: RetentionPolicy, now: datetime) -> tuple[TierPlan, ...]:
    """What each tier's rollups are due for now: downsampling first, then deletion."""
    plans = []
    for index, tier in enumerate(policy.tiers):
        coarser = policy.tiers[index + 1] if index + 1 < len(policy.tiers) else None
        plans.append(
            TierPlan(
                step=tier.step,
                delete_before=align(now - tier.keep, tier.step),
                downsample_to=coarser.step if coarser else None,
                downsample_before=align(now, coarser.step) if coarser else None,
            )
        )
    return tuple(plans)
