"""A SIMULATED runtime driver, for scale benchmarks of the pipeline's orchestration only.

Nothing runs: `start` records the instance in memory and returns at once (after an optional
fixed `delay_s`, which stands in for a runtime's own start/stop time), `stop` forgets it, and
`alive` says whether it is recorded. Readiness is real HTTP, because the executor checks it over
HTTP: every simulated instance's endpoint is one small server of this driver on 127.0.0.1 that
answers 200 on any path at once. Never use it to run a workload; it exists so that
`bench/pipeline.py` can measure the executor's overhead per instance without process start-up.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pipeline.driver import InstanceSpec, Running


class _Ready(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the executor's client reuses its connections
    disable_nagle_algorithm = True  # else headers and body wait on delayed ACKs (~40 ms)

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        return


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # a batch probes all its new instances at once
    daemon_threads = True


class SimulatedDriver:
    """The `Driver` protocol with instant start, stop and health (plus an optional fixed delay).

    Use it as a context manager (or call `close`) so its readiness server stops.
    """

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self._instances: dict[str, Running] = {}
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Ready)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="simulated-ready", daemon=True
        )
        self._thread.start()
        self.calls = {"start": 0, "stop": 0, "alive": 0}

    def __enter__(self) -> SimulatedDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the readiness server."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def _wait(self) -> None:
        if self.delay_s > 0:
            time.sleep(self.delay_s)

    def start(self, spec: InstanceSpec) -> Running:
        self.calls["start"] += 1
        with self._lock:
            found = self._instances.get(spec.id)
        if found is not None:
            return found
        self._wait()
        running = Running(
            id=spec.id,
            app=spec.app,
            host=spec.host,
            pid=0,
            port=self.port,
            started_at=datetime.now(UTC).isoformat(),
        )
        with self._lock:
            self._instances[spec.id] = running
        return running

    def stop(self, instance_id: str) -> None:
        self.calls["stop"] += 1
        with self._lock:
            known = self._instances.pop(instance_id, None)
        if known is not None:
            self._wait()

    def alive(self, instance_id: str) -> bool:
        self.calls["alive"] += 1
        with self._lock:
            return instance_id in self._instances

    def running(self) -> list[Running]:
        with self._lock:
            return sorted(self._instances.values(), key=lambda r: r.id)

    def describe_exit(self, instance_id: str) -> str:
        return f"simulated instance {instance_id} is not running (stopped or never started)"
