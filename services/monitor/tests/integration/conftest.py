"""Real HTTP targets, a fake CMDB service-discovery endpoint, and the monitor on real infra.

One stdlib HTTP server (threads, a free port) plays every instance at `/<instance>/metrics` and
the CMDB at `/v1/sd/prometheus` and `/v1/apps/<app>` (the owners in `Fleet.owners`). Each instance serves the workload's metric names with counters
that advance with real time at a chosen request rate and latency/status pattern, so the test
knows exactly what the instances' own counters say.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from asgi_lifespan import LifespanManager
from pydantic import SecretStr

from monitor.config import Settings
from monitor.domain import names
from monitor.main import MIGRATIONS, create_app
from ooda.auth import issue_token
from ooda.events import Event, decode
from ooda.migrations import wait_and_upgrade
from ooda.testing import (
    Infra,
    create_database,
    create_topics,
    delete_topics,
    kafka_settings,
    unique,
)

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, math.inf)


@dataclass
class FakeInstance:
    """One instance's counters, advanced lazily to `rate` requests per second of real time."""

    app: str
    name: str
    rate: float
    latencies: list[float] = field(default_factory=lambda: [0.02])
    statuses: list[str] = field(default_factory=lambda: ["200"])
    cpu_cores_busy: float = 0.25
    in_flight: float = 3.0
    garbage: bool = False
    delay_s: float = 0.0
    extra_series: int = 0
    served: int = 0
    scrapes: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    bucket_counts: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    latency_sum: float = 0.0
    started: float = field(default_factory=time.monotonic)
    last: float = field(default_factory=time.monotonic)
    carry: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def exposition(self) -> str:
        """The Prometheus text this instance serves right now."""
        if self.garbage:
            return "# TYPE http_requests_total counter\nhttp_requests_total{status=200 oops\n"
        with self.lock:
            self._advance()
            lines = [f"# TYPE {names.REQUESTS_TOTAL} counter"]
            for status, count in sorted(self.by_status.items()):
                lines.append(f'{names.REQUESTS_TOTAL}{{status="{status}"}} {count}')
            lines.append(f"# TYPE {names.LATENCY_SECONDS} histogram")
            for bound, count in zip(BUCKETS, self.bucket_counts, strict=True):
                le = "+Inf" if math.isinf(bound) else repr(bound)
                lines.append(f'{names.LATENCY_BUCKET}{{le="{le}"}} {count}')
            lines.append(f"{names.LATENCY_SECONDS}_sum {self.latency_sum}")
            lines.append(f"{names.LATENCY_SECONDS}_count {self.served}")
            cpu = self.cpu_cores_busy * (time.monotonic() - self.started)
            lines.append(f"# TYPE {names.CPU_SECONDS_TOTAL} counter")
            lines.append(f"{names.CPU_SECONDS_TOTAL} {cpu}")
            lines.append(f"# TYPE {names.IN_FLIGHT} gauge\n{names.IN_FLIGHT} {self.in_flight}")
            lines.append(f"# TYPE {names.READY} gauge\n{names.READY} 1")
            # A label explosion, after the workload's own series.
            lines.append("# TYPE exploding_total counter")
            lines.extend(f'exploding_total{{id="{i}"}} 1' for i in range(self.extra_series))
            return "\n".join(lines) + "\n"

    def _advance(self) -> None:
        now = time.monotonic()
        due = self.carry + self.rate * (now - self.last)
        count = int(due)
        self.carry, self.last = due - count, now
        for k in range(self.served, self.served + count):
            latency = self.latencies[k % len(self.latencies)]
            status = self.statuses[k % len(self.statuses)]
            self.by_status[status] = self.by_status.get(status, 0) + 1
            self.latency_sum += latency
            for index, bound in enumerate(BUCKETS):
                if latency <= bound:
                    self.bucket_counts[index] += 1
        self.served += count


class Fleet:
    """The HTTP server of every fake instance and of the fake CMDB SD endpoint."""

    def __init__(self) -> None:
        self.instances: dict[str, FakeInstance] = {}
        self.listed: set[str] = set()
        self.owners: dict[str, str] = {}
        fleet = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/v1/sd/prometheus":
                    body, kind = json.dumps(fleet.sd()).encode(), "application/json"
                elif self.path.startswith("/v1/apps/"):
                    app = self.path.removeprefix("/v1/apps/")
                    if app not in fleet.owners:
                        self.send_error(404)
                        return
                    item = {"id": app, "owner_team": fleet.owners[app]}
                    body, kind = json.dumps(item).encode(), "application/json"
                elif self.path.startswith("/v1/hosts?"):
                    hosts = {"items": [{"id": "local", "address": "127.0.0.1"}], "next": None}
                    body, kind = json.dumps(hosts).encode(), "application/json"
                else:
                    name = self.path.strip("/").removesuffix("/metrics")
                    instance = fleet.instances.get(name)
                    if instance is None:
                        self.send_error(404)
                        return
                    instance.scrapes += 1
                    time.sleep(instance.delay_s)
                    body, kind = instance.exposition().encode(), "text/plain; version=0.0.4"
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(
        self, app: str, name: str, rate: float, listed: bool = True, **kw: Any
    ) -> FakeInstance:
        """Serve a new instance and (by default) list it in service discovery."""
        instance = FakeInstance(app=app, name=name, rate=rate, **kw)
        self.instances[name] = instance
        if listed:
            self.listed.add(name)
        return instance

    def sd(self) -> list[dict[str, Any]]:
        """The Prometheus HTTP SD document of the listed instances."""
        return [
            {
                "targets": [f"127.0.0.1:{self.port}"],
                "labels": {
                    "app": self.instances[name].app,
                    "instance": name,
                    "zone": "z1",
                    "__metrics_path__": f"/{name}/metrics",
                },
            }
            for name in sorted(self.listed)
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    served = Fleet()
    yield served
    served.close()


@dataclass
class Env:
    """A fresh database and topic prefix that outlive one run of the monitor (for restarts)."""

    infra: Infra
    prefix: str
    database_url: str

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": self.database_url,
            **kafka_settings(self.infra.kafka()),
            "auth_secret": SecretStr(self.infra.auth_secret),
            "topic_prefix": self.prefix,
            "outbox_poll_seconds": 0.2,
            "scrape_interval_seconds": 1.0,
            "retention_every_seconds": 3600.0,
        }
        return Settings(**(values | overrides))

    def auth(self, subject: str, *scopes: str) -> dict[str, str]:
        token = issue_token(self.infra.auth_secret, subject, list(scopes), audience="monitor")
        return {"Authorization": f"Bearer {token}"}

    async def events(
        self, topic: str, done: Callable[[list[Event]], bool], timeout: float = 30.0
    ) -> list[Event]:
        """Events of `topic` (without prefix) from the start, until `done` says enough."""
        consumer = AIOKafkaConsumer(
            self.prefix + topic,
            **self.infra.kafka().options(),
            auto_offset_reset="earliest",
            group_id=unique("reader"),
            enable_auto_commit=False,
        )
        await consumer.start()
        found: list[Event] = []
        try:
            async with asyncio.timeout(timeout):
                while not done(found):
                    batch = await consumer.getmany(timeout_ms=300)
                    for records in batch.values():
                        found.extend(decode(r.key, r.headers, r.value) for r in records)
        finally:
            await consumer.stop()
        return found


@pytest.fixture
async def env(infra: Infra) -> AsyncIterator[Env]:
    prefix = unique("mon").replace("-", "") + "."
    await create_topics(infra, prefix)
    url = await create_database(infra, "monitor")
    await wait_and_upgrade(MIGRATIONS, url)
    yield Env(infra, prefix, url)
    await delete_topics(infra, prefix)


@dataclass
class Running:
    """The monitor app running in this process, with a client for its API."""

    app: Any
    client: httpx.AsyncClient


@asynccontextmanager
async def running_monitor(settings: Settings) -> AsyncIterator[Running]:
    """Run the monitor's lifespan (loops, consumer, relay) until the block ends."""
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://monitor") as client:
            async with asyncio.timeout(30):
                await app.state.runtime.kafka_started.wait()
            yield Running(app, client)


async def until(check: Callable[[], Any], timeout: float = 20.0, every: float = 0.2) -> Any:
    """Poll an async `check` until it returns something truthy; return it."""
    async with asyncio.timeout(timeout):
        while True:
            result = await check()
            if result:
                return result
            await asyncio.sleep(every)


@pytest.fixture
def wait_for() -> Callable[..., Any]:
    return until


@pytest.fixture
def run_monitor() -> Callable[[Settings], Any]:
    return running_monitor
