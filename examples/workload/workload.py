"""The sample workload's server: readiness, a capacity-bound `/work`, Prometheus metrics.

Capacity model: one instance serves `WORKLOAD_CAPACITY_RPS` requests per second at its target
latency. Each request burns a little real CPU; its latency then grows with the instance's
utilisation (requests in the last second over capacity) like a single queue, 1 / (1 - u), and a
request arriving when the last second already holds a full capacity's worth is refused with 503.

Failure switch `WORKLOAD_FAIL`: `start` exits at start, `unhealthy` never becomes ready,
`errors` answers every second `/work` request with 500. Used to exercise rollbacks.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BASE_LATENCY_S = 0.005
CPU_COST_S = 0.001
STARTED_AT = time.time()
MAX_LATENCY_S = 2.0


class Config:
    """The instance's identity and behaviour, read from `WORKLOAD_*` variables."""

    def __init__(self, env: dict[str, str]) -> None:
        self.app = env.get("WORKLOAD_APP", "workload")
        self.version = env.get("WORKLOAD_VERSION", "0.0.0")
        self.instance = env.get("WORKLOAD_INSTANCE", f"{self.app}-{os.getpid()}")
        self.zone = env.get("WORKLOAD_ZONE", "local")
        self.capacity_rps = max(0.1, float(env.get("WORKLOAD_CAPACITY_RPS", "50")))
        self.fail = env.get("WORKLOAD_FAIL", "").strip().lower()
        self.warmup_s = float(env.get("WORKLOAD_WARMUP_SECONDS", "0.2"))
        if self.fail not in ("", "start", "unhealthy", "errors"):
            raise SystemExit(f"WORKLOAD_FAIL must be start, unhealthy or errors, not {self.fail!r}")


class State:
    """Counters, the latency histogram and the recent arrivals, shared by the handler threads."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.stopping = False
        self.in_flight = 0
        self.requests: collections.Counter[str] = collections.Counter()
        self.bucket_counts = [0] * len(BUCKETS)
        self.latency_sum = 0.0
        self.latency_count = 0
        self.arrivals: collections.deque[float] = collections.deque()
        self.served = 0

    @property
    def ready(self) -> bool:
        """Warmed up, not stopping, and not switched to fail its readiness."""
        warm = time.monotonic() - self.started >= self.config.warmup_s
        return warm and not self.stopping and self.config.fail != "unhealthy"

    def admit(self) -> float | None:
        """Count an arrival; its utilisation, or None when the last second is at capacity."""
        now = time.monotonic()
        with self.lock:
            while self.arrivals and now - self.arrivals[0] > 1.0:
                self.arrivals.popleft()
            if len(self.arrivals) >= self.config.capacity_rps:
                return None
            self.arrivals.append(now)
            self.in_flight += 1
            return len(self.arrivals) / self.config.capacity_rps

    def finish(self, status: int, seconds: float, admitted: bool) -> None:
        """Record one finished `/work` request."""
        with self.lock:
            if admitted:
                self.in_flight -= 1
            self.requests[str(status)] += 1
            self.latency_sum += seconds
            self.latency_count += 1
            for n, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    self.bucket_counts[n] += 1

    def metrics(self) -> str:
        """The Prometheus text exposition of this instance."""
        c = self.config
        base = f'app="{c.app}",version="{c.version}",instance="{c.instance}",zone="{c.zone}"'
        with self.lock:
            lines = [
                "# HELP http_requests_total Requests to /work by status code.",
                "# TYPE http_requests_total counter",
            ]
            for status in sorted(self.requests):
                lines.append(
                    f'http_requests_total{{{base},status="{status}"}} {self.requests[status]}'
                )
            lines += [
                "# HELP http_request_duration_seconds Latency of /work requests.",
                "# TYPE http_request_duration_seconds histogram",
            ]
            for bound, count in zip(BUCKETS, self.bucket_counts, strict=True):
                lines.append(f'http_request_duration_seconds_bucket{{{base},le="{bound}"}} {count}')
            lines += [
                f'http_request_duration_seconds_bucket{{{base},le="+Inf"}} {self.latency_count}',
                f"http_request_duration_seconds_sum{{{base}}} {self.latency_sum:.6f}",
                f"http_request_duration_seconds_count{{{base}}} {self.latency_count}",
                "# HELP http_requests_in_flight Requests to /work being served now.",
                "# TYPE http_requests_in_flight gauge",
                f"http_requests_in_flight{{{base}}} {self.in_flight}",
            ]
        lines += [
            "# HELP process_start_time_seconds Start time of the process since the epoch.",
            "# TYPE process_start_time_seconds gauge",
            f"process_start_time_seconds{{{base}}} {STARTED_AT:.3f}",
            "# HELP process_cpu_seconds_total CPU seconds used by the process.",
            "# TYPE process_cpu_seconds_total counter",
            f"process_cpu_seconds_total{{{base}}} {time.process_time():.6f}",
            "# HELP app_ready Whether the instance's readiness check passes.",
            "# TYPE app_ready gauge",
            f"app_ready{{{base}}} {1 if self.ready else 0}",
            "# HELP workload_capacity_rps Requests per second served at target latency.",
            "# TYPE workload_capacity_rps gauge",
            f"workload_capacity_rps{{{base}}} {c.capacity_rps:g}",
        ]
        return "\n".join(lines) + "\n"


def burn(seconds: float) -> None:
    """Spend real CPU for about `seconds`."""
    end = time.process_time() + seconds
    x = 0
    while time.process_time() < end:
        x += 1


def make_handler(state: State) -> type[BaseHTTPRequestHandler]:
    """The request handler class bound to one instance's state."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "ooda-workload/1"
        timeout = 5  # an idle keep-alive connection must not hold up a graceful stop

        def log_message(self, format: str, *args: object) -> None:
            return

        def _send(self, status: int, body: str, content_type: str = "application/json") -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            if state.stopping:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(data)

        def _json(self, code: int, **fields: object) -> None:
            self._send(code, json.dumps(fields))

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            c = state.config
            if path == "/healthz":
                self._json(200, status="ok", instance=c.instance, version=c.version)
            elif path == "/readyz":
                ready = state.ready
                self._json(200 if ready else 503, ready=ready, instance=c.instance)
            elif path == "/metrics":
                self._send(200, state.metrics(), "text/plain; version=0.0.4; charset=utf-8")
            elif path == "/work":
                self._work()
            else:
                self._json(404, error=f"no route {path}")

        def _work(self) -> None:
            began = time.monotonic()
            utilisation = state.admit()
            if utilisation is None:
                self._json(503, error="over capacity")
                state.finish(503, time.monotonic() - began, admitted=False)
                return
            burn(CPU_COST_S)
            target = min(MAX_LATENCY_S, BASE_LATENCY_S / max(0.02, 1.0 - utilisation))
            remaining = target - (time.monotonic() - began)
            if remaining > 0:
                time.sleep(remaining)
            with state.lock:
                state.served += 1
                failing = state.config.fail == "errors" and state.served % 2 == 0
            status = 500 if failing else 200
            self._json(status, instance=state.config.instance, utilisation=round(utilisation, 3))
            state.finish(status, time.monotonic() - began, admitted=True)

    return Handler


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then finish in-flight requests and exit."""
    parser = argparse.ArgumentParser(description="OODA sample workload")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    config = Config(dict(os.environ))
    if config.fail == "start":
        print(f"{config.instance}: WORKLOAD_FAIL=start, exiting", file=sys.stderr)
        raise SystemExit(3)
    state = State(config)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(state))
    server.daemon_threads = False
    server.block_on_close = True

    def stop(signum: int, frame: object) -> None:
        state.stopping = True
        # shutdown() waits for serve_forever, which runs in this (the main) thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(
        f"{config.instance} ({config.app} {config.version}, zone {config.zone}) serving on "
        f"{args.host}:{args.port}",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()  # joins the handler threads: in-flight requests finish first
    print(f"{config.instance}: stopped", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
