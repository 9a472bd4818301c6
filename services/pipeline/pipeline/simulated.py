"""A SIMULATED runtime driver, for scale benchmarks of the pipeline's orchestration only.

Nothing runs: `start` records the instance in memory and returns at once (after an optional
fixed `delay_s`, which stands in for a runtime's own start/stop time), `stop` forgets it, and
`alive` says whether it is recorded. Readiness is real HTTP, because the executor checks it over
HTTP: every simulated instance's endpoint is one small server of this driver on 127.0.0.1 that
answers 200 on any path at once. That server runs in a child process of its own, as instances
do: inside the executor's process its threads would compete with the executor for the
interpreter lock, and their waits would be counted as orchestration. Never use it to run a
workload; it exists so that `bench/pipeline.py` can measure the executor's overhead per instance
without process start-up.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

from pipeline.driver import InstanceSpec, Running

# The readiness server's program: HTTP/1.1 (keep-alive unless the request asks to close),
# 200 "ok" to every request; it exits when its standard input closes, so it never
# outlives the driver, even when the process that made the driver is killed.
_SERVER = """
import asyncio, sys, threading, os

class Ready(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.pending = transport, b""

    def data_received(self, data):
        self.pending += data
        while b"\\r\\n\\r\\n" in self.pending:
            head, self.pending = self.pending.split(b"\\r\\n\\r\\n", 1)
            self.transport.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
            if b"connection: close" in head.lower():
                self.transport.close()
                return

async def main():
    server = await asyncio.get_running_loop().create_server(
        Ready, "127.0.0.1", 0, backlog=1024
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()

threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
asyncio.run(main())
"""


class SimulatedDriver:
    """The `Driver` protocol with instant start, stop and health (plus an optional fixed delay).

    Use it as a context manager (or call `close`) so its readiness server stops.
    """

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self._instances: dict[str, Running] = {}
        self._lock = threading.Lock()
        self._server = subprocess.Popen(
            [sys.executable, "-c", _SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self._server.stdout is not None
        self.port = int(self._server.stdout.readline())
        self.calls = {"start": 0, "stop": 0, "alive": 0}

    def __enter__(self) -> SimulatedDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the readiness server."""
        if self._server.stdin is not None:
            self._server.stdin.close()
        try:
            self._server.wait(5)
        except subprocess.TimeoutExpired:
            self._server.kill()
            self._server.wait(5)
        if self._server.stdout is not None:
            self._server.stdout.close()

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
