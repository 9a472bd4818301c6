"""The one place that spells the metric names the sample workload exposes and the monitor derives.

Every instance of an application is expected to expose, in the Prometheus text format:

- `http_requests_total{status="..."}` counter, one series per status code (and any other labels);
  a status starting with 5 is an error.
- `http_request_duration_seconds` histogram (`_bucket{le}`, `_sum`, `_count`), in seconds, with
  the same bucket layout on every instance of the application.
- `process_cpu_seconds_total` counter, CPU seconds the process has used.
- `http_requests_in_flight` gauge, requests being served now.
- `app_ready` gauge, 1 while the instance's readiness check passes (an instance that does not
  expose it counts as ready while it is scraped successfully).
- optionally `process_start_time_seconds` gauge, the process's start in seconds since the epoch:
  an instance first scraped soon after it started then counts from its start (its counters were
  at zero), so a scale-out does not dip the measured load for a window.
"""

from enum import StrEnum

REQUESTS_TOTAL = "http_requests_total"
STATUS_LABEL = "status"
ERROR_STATUS_PREFIX = "5"
LATENCY_SECONDS = "http_request_duration_seconds"
LATENCY_BUCKET = f"{LATENCY_SECONDS}_bucket"
BUCKET_BOUND_LABEL = "le"
CPU_SECONDS_TOTAL = "process_cpu_seconds_total"
IN_FLIGHT = "http_requests_in_flight"
READY = "app_ready"
START_TIME = "process_start_time_seconds"


class Metric(StrEnum):
    """A per-application aggregate, named as the field of the metric-observed payload."""

    REQUEST_RATE = "request_rate"
    ERROR_RATE = "error_rate"
    LATENCY_P50_MS = "latency_p50_ms"
    LATENCY_P95_MS = "latency_p95_ms"
    LATENCY_P99_MS = "latency_p99_ms"
    CPU_UTILISATION = "cpu_utilisation"
    IN_FLIGHT = "in_flight"
    READY_INSTANCES = "ready_instances"
    LOAD_PER_INSTANCE = "load_per_instance"
