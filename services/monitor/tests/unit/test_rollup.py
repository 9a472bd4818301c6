"""Combining rollups into coarser windows, and the retention plan."""

import math
from datetime import UTC, datetime, timedelta

import pytest

from monitor.domain import (
    DEFAULT_RETENTION,
    AppRollup,
    Histogram,
    Metric,
    RetentionPolicy,
    Tier,
    align,
    downsample,
    plan_retention,
)

pytestmark = pytest.mark.unit

START = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
STEP = timedelta(seconds=5)


def rollup(
    offset_s: float,
    *,
    app: str = "shop",
    duration_s: float = 5,
    values: dict[Metric, float | None] | None = None,
    requests: float = 0,
    errors: float = 0,
    latency: Histogram | None = None,
    instances: int = 2,
    staleness_s: float = 1.0,
) -> AppRollup:
    window_start = START + timedelta(seconds=offset_s)
    return AppRollup(
        app_id=app,
        window_start=window_start,
        window_end=window_start + timedelta(seconds=duration_s),
        values=values or {},
        instance_count=instances,
        staleness_s=staleness_s,
        requests=requests,
        errors=errors,
        latency=latency or Histogram(),
    )


def test_downsampled_rates_are_averaged_by_time_over_windows_that_had_data():
    parts = [
        rollup(0, duration_s=10, values={Metric.REQUEST_RATE: 10.0, Metric.IN_FLIGHT: 2}),
        rollup(10, duration_s=30, values={Metric.REQUEST_RATE: 50.0, Metric.IN_FLIGHT: None}),
        rollup(40, duration_s=20, values={Metric.REQUEST_RATE: None, Metric.IN_FLIGHT: 4}),
    ]

    [minute] = downsample(parts, timedelta(minutes=1))

    assert minute.value(Metric.REQUEST_RATE) == pytest.approx((10 * 10 + 50 * 30) / 40)
    assert minute.value(Metric.IN_FLIGHT) == pytest.approx((2 * 10 + 4 * 20) / 30)


def test_downsampled_error_rate_weighs_each_window_by_its_requests():
    parts = [rollup(0, requests=1000, errors=10), rollup(5, requests=10, errors=10)]

    [minute] = downsample(parts, timedelta(minutes=1))

    assert minute.value(Metric.ERROR_RATE) == pytest.approx(20 / 1010)
    assert (minute.requests, minute.errors) == (1010, 20)


def test_downsampled_quantiles_come_from_merged_histograms_not_from_averaged_or_max_quantiles():
    fast = Histogram.from_buckets({0.1: 100, 0.5: 100, 1.0: 100, math.inf: 100})
    slow = Histogram.from_buckets({0.1: 0, 0.5: 0, 1.0: 10, math.inf: 10})
    parts = [
        rollup(0, latency=fast, values={Metric.LATENCY_P99_MS: 99.0}),
        rollup(5, latency=slow, values={Metric.LATENCY_P99_MS: 995.0}),
    ]

    [minute] = downsample(parts, timedelta(minutes=1))

    assert minute.value(Metric.LATENCY_P99_MS) == pytest.approx(945.0)
    assert minute.latency.counts == (100, 100, 110, 110)


def test_downsampling_groups_by_application_and_aligned_window():
    parts = [
        rollup(55, instances=2, staleness_s=1.0),
        rollup(60, instances=3, staleness_s=4.0),
        rollup(65, instances=1, staleness_s=0.5),
        rollup(0, app="cart"),
    ]

    result = downsample(parts, timedelta(minutes=1))

    assert [(r.app_id, r.window_start, r.window_end) for r in result] == [
        ("cart", START, START + timedelta(minutes=1)),
        ("shop", START, START + timedelta(minutes=1)),
        ("shop", START + timedelta(minutes=1), START + timedelta(minutes=2)),
    ]
    assert (result[2].instance_count, result[2].staleness_s) == (3, 0.5)


def test_windows_align_to_the_epoch():
    moment = datetime(2025, 1, 1, 12, 7, 31, 500, tzinfo=UTC)

    assert align(moment, timedelta(minutes=10)) == datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert align(moment, STEP) == datetime(2025, 1, 1, 12, 7, 30, tzinfo=UTC)


def test_the_retention_plan_downsamples_closed_windows_and_deletes_past_retention():
    now = datetime(2025, 3, 1, 12, 7, 31, tzinfo=UTC)

    raw, minute, ten_minutes = plan_retention(DEFAULT_RETENTION, now)

    assert raw.downsample_to == timedelta(minutes=1)
    assert raw.downsample_before == datetime(2025, 3, 1, 12, 7, tzinfo=UTC)
    assert raw.delete_before == datetime(2025, 3, 1, 6, 7, 30, tzinfo=UTC)
    assert minute.downsample_before == datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert minute.delete_before == datetime(2025, 2, 22, 12, 7, tzinfo=UTC)
    assert (ten_minutes.downsample_to, ten_minutes.downsample_before) == (None, None)
    assert ten_minutes.delete_before == datetime(2024, 12, 1, 12, 0, tzinfo=UTC)


def test_a_retention_policy_that_would_delete_data_before_downsampling_it_is_rejected():
    with pytest.raises(ValueError, match="kept at least"):
        RetentionPolicy((Tier(STEP, timedelta(seconds=30)), Tier(timedelta(minutes=1), STEP)))
    with pytest.raises(ValueError, match="coarser multiple"):
        RetentionPolicy((Tier(timedelta(seconds=7), timedelta(hours=1)), Tier(STEP, STEP)))
