"""Aggregating an application's instances over one interval from two consecutive scrapes."""

from datetime import UTC, datetime, timedelta

import pytest

from monitor.domain import Metric, Snapshot, aggregate_app, parse_exposition
from ooda.events import MetricObserved

pytestmark = pytest.mark.unit

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(seconds=10)
NOW = T1 + timedelta(seconds=2)
BOUNDS = ("0.1", "0.5", "1.0", "+Inf")


def exposition(
    ok: float = 0,
    errors: float = 0,
    buckets: tuple[float, ...] = (0, 0, 0, 0),
    cpu: float = 0.0,
    in_flight: float = 0,
    ready: float | None = None,
) -> str:
    lines = [
        "# TYPE http_requests_total counter",
        f'http_requests_total{{method="GET",status="200"}} {ok}',
        f'http_requests_total{{method="GET",status="503"}} {errors}',
        "# TYPE http_request_duration_seconds histogram",
        *(
            f'http_request_duration_seconds_bucket{{le="{le}"}} {count}'
            for le, count in zip(BOUNDS, buckets, strict=True)
        ),
        f"http_request_duration_seconds_count {buckets[-1]}",
        "http_request_duration_seconds_sum 0",
        f"process_cpu_seconds_total {cpu}",
        f"http_requests_in_flight {in_flight}",
    ]
    if ready is not None:
        lines.append(f"app_ready {ready}")
    return "\n".join(lines) + "\n"


def snapshot(instance: str, at: datetime, text: str) -> Snapshot:
    return Snapshot(instance, at, parse_exposition(text).samples)


def aggregate(previous: list[Snapshot], current: list[Snapshot], cpu_request: float = 1.0):
    return aggregate_app("shop", previous, current, T0, T1, NOW, cpu_request=cpu_request)


def test_request_and_error_rates_sum_counter_increases_of_all_instances():
    previous = [
        snapshot("a", T0, exposition(ok=200, errors=0)),
        snapshot("b", T0, exposition(ok=50, errors=5)),
    ]
    current = [
        snapshot("a", T1, exposition(ok=300, errors=10)),
        snapshot("b", T1, exposition(ok=150, errors=5)),
    ]

    rollup = aggregate(previous, current)

    assert rollup.value(Metric.REQUEST_RATE) == pytest.approx(21.0)
    assert rollup.value(Metric.ERROR_RATE) == pytest.approx(10 / 210)
    assert (rollup.requests, rollup.errors) == (210, 10)


def test_a_counter_that_went_down_is_counted_as_restarted_from_zero():
    previous = [snapshot("a", T0, exposition(ok=1000, errors=40, cpu=50.0))]
    current = [snapshot("a", T1, exposition(ok=30, errors=0, cpu=2.0))]

    rollup = aggregate(previous, current)

    assert rollup.value(Metric.REQUEST_RATE) == pytest.approx(3.0)
    assert rollup.value(Metric.ERROR_RATE) == 0
    assert rollup.value(Metric.CPU_UTILISATION) == pytest.approx(0.2)


def test_latency_quantiles_come_from_the_sum_of_the_instances_bucket_increases():
    previous = [
        snapshot("fast", T0, exposition(buckets=(1000, 1000, 1000, 1000))),
        snapshot("slow", T0, exposition(buckets=(0, 0, 7, 7))),
    ]
    current = [
        snapshot("fast", T1, exposition(buckets=(1100, 1100, 1100, 1100))),
        snapshot("slow", T1, exposition(buckets=(0, 0, 17, 17))),
    ]

    rollup = aggregate(previous, current)

    assert rollup.latency.counts == (100, 100, 110, 110)
    assert rollup.value(Metric.LATENCY_P99_MS) == pytest.approx(945.0)
    assert rollup.value(Metric.LATENCY_P50_MS) == pytest.approx(55.0)


def test_cpu_utilisation_is_the_mean_share_of_the_granted_cpu_per_instance():
    previous = [snapshot("a", T0, exposition(cpu=10.0)), snapshot("b", T0, exposition(cpu=0.0))]
    current = [snapshot("a", T1, exposition(cpu=13.0)), snapshot("b", T1, exposition(cpu=1.0))]

    rollup = aggregate(previous, current, cpu_request=0.5)

    assert rollup.value(Metric.CPU_UTILISATION) == pytest.approx(0.4)


def test_a_new_instance_counts_for_gauges_and_readiness_but_not_for_rates():
    previous = [snapshot("a", T0, exposition(ok=0))]
    current = [
        snapshot("a", T1, exposition(ok=100, in_flight=3)),
        snapshot("b", T1, exposition(ok=5000, in_flight=1)),
        snapshot("c", T1, exposition(ok=0, in_flight=0, ready=0)),
    ]

    rollup = aggregate(previous, current)

    assert rollup.value(Metric.REQUEST_RATE) == pytest.approx(10.0)
    assert rollup.value(Metric.IN_FLIGHT) == 4
    assert rollup.value(Metric.READY_INSTANCES) == 2
    assert rollup.value(Metric.LOAD_PER_INSTANCE) == pytest.approx(5.0)
    assert rollup.instance_count == 3


def test_an_instance_that_started_within_the_window_counts_from_its_start():
    started = (T1 - timedelta(seconds=4)).timestamp()
    # Its warm-up: slow answers, a few errors, CPU: counted for the load only.
    warm_up = exposition(ok=60, errors=20, buckets=(0, 0, 0, 80), cpu=3.0)
    fresh = warm_up + f"process_start_time_seconds {started}\n"
    old = (
        exposition(ok=5000)
        + f"process_start_time_seconds {(T0 - timedelta(hours=1)).timestamp()}\n"
    )
    previous = [snapshot("a", T0, exposition(ok=0))]
    current = [
        snapshot("a", T1, exposition(ok=100)),
        snapshot("b", T1, fresh),  # 80 requests in its 4 s of life: 20/s
        snapshot("c", T1, old),  # first seen, but running for an hour: no baseline, no rate
    ]

    rollup = aggregate(previous, current)

    assert rollup.value(Metric.REQUEST_RATE) == pytest.approx(10.0 + 20.0)
    assert rollup.value(Metric.LOAD_PER_INSTANCE) == pytest.approx(10.0)
    assert rollup.value(Metric.ERROR_RATE) == 0.0
    assert rollup.value(Metric.CPU_UTILISATION) == 0.0
    assert not any(rollup.latency.counts)  # no latency from its warm-up


def test_staleness_is_the_age_of_the_newest_scrape():
    current = [
        snapshot("a", T1 - timedelta(seconds=3), exposition()),
        snapshot("b", T1, exposition()),
    ]

    assert aggregate([], current).staleness_s == pytest.approx(2.0)


def test_an_application_without_scraped_instances_reports_no_data_rather_than_zero():
    rollup = aggregate([], [])

    assert rollup.value(Metric.REQUEST_RATE) is None
    assert rollup.value(Metric.LATENCY_P99_MS) is None
    assert rollup.value(Metric.READY_INSTANCES) == 0
    assert rollup.instance_count == 0
    assert rollup.staleness_s == pytest.approx((NOW - T0).total_seconds())


def test_a_rollup_is_a_valid_metric_observed_payload():
    previous = [snapshot("a", T0, exposition(ok=0, buckets=(0, 0, 0, 0)))]
    current = [snapshot("a", T1, exposition(ok=40, errors=2, buckets=(30, 40, 42, 42), ready=1))]

    event = MetricObserved.model_validate(aggregate(previous, current).as_payload())

    assert event.app == "shop"
    assert (event.window_start, event.window_end) == (T0, T1)
    assert event.instance_count == 1
    assert event.values.request_rate == pytest.approx(4.2)
    assert event.values.ready_instances == 1
    assert event.values.latency_p99_ms is not None
