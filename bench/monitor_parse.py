"""Benchmark of the monitor's pure path: parse, cap and aggregate 1,000 targets of ~200 series.

Prints CPU seconds per round and samples per CPU second for the monitor's domain (record_scrape
per target, then aggregate_app per application) beside a baseline measured in the same run: the
bare prometheus-client text parser looping over the same bodies. Scraping over HTTP is not part
of this figure.

    .venv/bin/python bench/monitor_parse.py [--targets 1000] [--apps 50] [--rounds 5]
"""

import argparse
import statistics
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from monitor.domain import Snapshot, Target, aggregate_app, record_scrape

INTERVAL = timedelta(seconds=5)
METHODS = ("GET", "POST")
ROUTES = ("/", "/items", "/items/{id}", "/cart", "/checkout")
STATUSES = ("200", "404", "500", "503")
BOUNDS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0")
CACHES = 72  # filler gauges that bring a target to 200 series, like an app's own metrics


def exposition(target: int, round_no: int) -> str:
    """The body one instance of the sample workload would serve at a given round."""
    load = (target % 7 + 1) * 40 * round_no
    lines = ["# HELP http_requests_total Requests served", "# TYPE http_requests_total counter"]
    for m, method in enumerate(METHODS):
        for r, route in enumerate(ROUTES):
            for s, status in enumerate(STATUSES):
                count = load // (1 + m + r + 8 * s)
                labels = f'method="{method}",route="{route}",status="{status}"'
                lines.append(f"http_requests_total{{{labels}}} {count}.0")
    lines += [
        "# HELP http_request_duration_seconds Request latency",
        "# TYPE http_request_duration_seconds histogram",
    ]
    for r, route in enumerate(ROUTES):
        total = load // (1 + r)
        for b, bound in enumerate(BOUNDS):
            count = total * (b + 1) // (len(BOUNDS) + 1)
            lines.append(
                f'http_request_duration_seconds_bucket{{le="{bound}",route="{route}"}} {count}.0'
            )
        lines.append(f'http_request_duration_seconds_bucket{{le="+Inf",route="{route}"}} {total}.0')
        lines.append(f'http_request_duration_seconds_count{{route="{route}"}} {total}.0')
        lines.append(f'http_request_duration_seconds_sum{{route="{route}"}} {total * 0.042}')
    lines += [
        "# TYPE http_requests_in_flight gauge",
        f"http_requests_in_flight {target % 5}.0",
        "# TYPE app_ready gauge",
        "app_ready 1.0",
        "# TYPE process_cpu_seconds_total counter",
        f"process_cpu_seconds_total {round_no * 1.7 + target * 0.01}",
        "# TYPE process_resident_memory_bytes gauge",
        f"process_resident_memory_bytes {52_000_000 + target}.0",
        "# TYPE process_virtual_memory_bytes gauge",
        f"process_virtual_memory_bytes {310_000_000 + target}.0",
        "# TYPE process_start_time_seconds gauge",
        "process_start_time_seconds 1.7356896e+09",
        "# TYPE process_open_fds gauge",
        "process_open_fds 23.0",
        "# TYPE process_max_fds gauge",
        "process_max_fds 1024.0",
        "# TYPE python_info gauge",
        'python_info{implementation="CPython",major="3",minor="11",patchlevel="9"} 1.0',
    ]
    for family in ("objects_collected", "objects_uncollectable", "collections"):
        lines.append(f"# TYPE python_gc_{family}_total counter")
        lines += [
            f'python_gc_{family}_total{{generation="{g}"}} {round_no * (g + 3)}.0' for g in range(3)
        ]
    lines.append("# TYPE cache_entries gauge")
    lines += [f'cache_entries{{cache="c{c}"}} {target + c}.0' for c in range(CACHES)]
    return "\n".join(lines) + "\n"


def baseline(bodies: list[str]) -> tuple[float, int]:
    """CPU seconds and samples for the bare prometheus-client parser over every body."""
    samples = 0
    started = time.process_time()
    for body in bodies:
        for family in text_string_to_metric_families(body):
            samples += len(family.samples)
    return time.process_time() - started, samples


def monitor(
    targets: list[Target],
    bodies: list[str],
    previous: dict[str, list[Snapshot]],
    at: datetime,
) -> tuple[float, float, int, dict[str, list[Snapshot]]]:
    """CPU seconds of scrape recording and of aggregation, samples kept, and the new snapshots."""
    current: dict[str, list[Snapshot]] = defaultdict(list)
    samples = 0
    started = time.process_time()
    for target, body in zip(targets, bodies, strict=True):
        result = record_scrape(target, at, 0.002, body)
        if result.snapshot is not None:
            current[target.app_id].append(result.snapshot)
            samples += result.series
    parsed = time.process_time()
    for app_id, snapshots in current.items():
        aggregate_app(app_id, previous.get(app_id, []), snapshots, at - INTERVAL, at, at)
    aggregated = time.process_time()
    return parsed - started, aggregated - parsed, samples, current


def main() -> None:
    """Run the rounds and print the figures side by side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--apps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    targets = [
        Target(f"app-{i % args.apps}", f"instance-{i}", f"http://127.0.0.1:{9000 + i}/metrics")
        for i in range(args.targets)
    ]
    start = datetime(2025, 1, 1, tzinfo=UTC)
    _, _, _, previous = monitor(targets, [exposition(i, 0) for i in range(args.targets)], {}, start)

    base_cpu: list[float] = []
    parse_cpu: list[float] = []
    aggregate_cpu: list[float] = []
    base_samples = kept_samples = 0
    for round_no in range(1, args.rounds + 1):
        bodies = [exposition(i, round_no) for i in range(args.targets)]
        at = start + round_no * INTERVAL
        # Alternate which runs first so neither always inherits a warm or a cold cache.
        if round_no % 2:
            base_seconds, base_samples = baseline(bodies)
            parse_s, aggregate_s, kept_samples, previous = monitor(targets, bodies, previous, at)
        else:
            parse_s, aggregate_s, kept_samples, previous = monitor(targets, bodies, previous, at)
            base_seconds, base_samples = baseline(bodies)
        base_cpu.append(base_seconds)
        parse_cpu.append(parse_s)
        aggregate_cpu.append(aggregate_s)

    base = statistics.median(base_cpu)
    parse = statistics.median(parse_cpu)
    aggregate = statistics.median(aggregate_cpu)
    total = parse + aggregate
    interval = INTERVAL.total_seconds()
    print(
        f"{args.targets} targets, {kept_samples // args.targets} series each, {args.apps} apps, "
        f"median of {args.rounds} rounds (CPU time)"
    )
    print(f"{'':34}{'CPU s/round':>12}{'samples/s':>12}{'cores @5s':>11}")
    rows = (
        ("baseline: bare text parser loop", base, base_samples),
        ("monitor: parse + cap (record)", parse, kept_samples),
        ("monitor: aggregate per app", aggregate, kept_samples),
        ("monitor: total", total, kept_samples),
    )
    for label, seconds, samples in rows:
        print(f"{label:34}{seconds:12.3f}{samples / seconds:12,.0f}{seconds / interval:11.3f}")
    print(f"monitor / baseline CPU per sample: {total / kept_samples / (base / base_samples):.2f}x")


if __name__ == "__main__":
    main()
