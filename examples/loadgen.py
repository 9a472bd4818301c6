"""Replay a load trace as live HTTP traffic against an application's ready instances.

The request rate follows the trace (scaled so its peak is `peak_rps`, time-compressed so one trace
step lasts `step_seconds`). Instances come from the CMDB (`GET /v1/instances?app=`), refreshed every
second, and requests are balanced across them client-side, so the generator follows instances as
the platform adds and removes them. An instance that refuses connections (stopped by a scale-in
before the CMDB's list says so) is ejected from the rotation for a few seconds and the request
is sent once more to another one, as client-side balancers do. It records, per step, what was
sent, served, failed, retried and slow.

    python examples/loadgen.py --trace data/traces/msft/mongo-01.csv --app shop \\
        --start 7000 --steps 120 --step-seconds 2 --peak-rps 200
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from decision.models.trace import load_trace

Endpoints = Callable[[], Awaitable[list[str]]]


@dataclass
class StepStats:
    """What happened during one replayed trace step."""

    step: int
    trace_value: float
    target_rps: float
    sent: int = 0
    ok: int = 0
    failed: int = 0
    slow: int = 0
    dropped: int = 0
    retried: int = 0
    instances: int = 0
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, float | int]:
        """The step's figures without the raw latencies."""
        lat = sorted(self.latencies_ms)
        out = {k: v for k, v in asdict(self).items() if k != "latencies_ms"}
        out["p50_ms"] = lat[len(lat) // 2] if lat else math.nan
        out["p99_ms"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else math.nan
        return out


def cmdb_endpoints(client: httpx.AsyncClient, cmdb_url: str, app: str) -> Endpoints:
    """Ready instance endpoints of `app`, read from the CMDB."""

    async def fetch() -> list[str]:
        response = await client.get(f"{cmdb_url}/v1/instances", params={"app": app})
        response.raise_for_status()
        return sorted(
            f"http://{i['endpoint']}" for i in response.json()["items"] if i["status"] == "ready"
        )

    return fetch


class LoadGenerator:
    """Open-loop traffic at a changing rate, spread round-robin over the current instances."""

    def __init__(
        self,
        endpoints: Endpoints,
        *,
        path: str = "/work",
        slow_ms: float = 250.0,
        timeout_s: float = 2.0,
        max_in_flight: int = 400,
    ) -> None:
        self.endpoints = endpoints
        self.path = path
        self.slow_ms = slow_ms
        self.timeout_s = timeout_s
        self.max_in_flight = max_in_flight
        self.eject_s = 5.0
        self._current: list[str] = []
        self._rotation: list[str] = []
        self._cycle: itertools.cycle[str] | None = None
        self._ejected: dict[str, float] = {}  # endpoint -> monotonic time it may return
        self._in_flight = 0

    def _rebuild(self) -> None:
        now = time.monotonic()
        self._ejected = {url: until for url, until in self._ejected.items() if until > now}
        rotation = [url for url in self._current if url not in self._ejected]
        if rotation != self._rotation:
            self._rotation = rotation
            self._cycle = itertools.cycle(rotation) if rotation else None

    def _eject(self, url: str) -> None:
        """Take an endpoint that refused a connection out of the rotation for `eject_s`."""
        self._ejected[url] = time.monotonic() + self.eject_s
        self._rebuild()

    async def _refresh_once(self) -> None:
        try:
            found = await self.endpoints()
        except httpx.HTTPError:
            found = self._current  # keep the last known instances while the CMDB is unreachable
        self._current = found
        self._rebuild()

    async def _refresh(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(1.0)
            await self._refresh_once()

    async def _one(self, client: httpx.AsyncClient, url: str, stats: StepStats) -> None:
        started = time.perf_counter()
        try:
            try:
                response = await client.get(url + self.path, timeout=self.timeout_s)
            except httpx.ConnectError:
                # Nothing listens there any more (or not yet): eject it, try another instance once.
                self._eject(url)
                if self._cycle is None:
                    raise
                stats.retried += 1
                response = await client.get(next(self._cycle) + self.path, timeout=self.timeout_s)
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code < 500:
                stats.ok += 1
                stats.latencies_ms.append(elapsed)
                stats.slow += elapsed > self.slow_ms
            else:
                stats.failed += 1
        except httpx.HTTPError:
            stats.failed += 1
        finally:
            self._in_flight -= 1

    async def replay(
        self,
        values: Sequence[float],
        peak_rps: float,
        step_seconds: float,
        on_step: Callable[[StepStats], None] | None = None,
    ) -> list[StepStats]:
        """Send the trace `values` (scaled so max -> peak_rps); returns per-step stats."""
        peak = max((v for v in values if math.isfinite(v)), default=1.0) or 1.0
        stop = asyncio.Event()
        results: list[StepStats] = []
        limits = httpx.Limits(max_connections=self.max_in_flight, max_keepalive_connections=100)
        await self._refresh_once()
        async with httpx.AsyncClient(limits=limits) as client:
            refresher = asyncio.create_task(self._refresh(stop))
            tasks: set[asyncio.Task[None]] = set()
            try:
                for step, value in enumerate(values):
                    rate = (value / peak * peak_rps) if math.isfinite(value) else 0.0
                    stats = StepStats(step, float(value), rate, instances=len(self._current))
                    await self._send_step(client, stats, rate, step_seconds, tasks)
                    results.append(stats)
                    if on_step:
                        on_step(stats)
                await asyncio.gather(*tasks, return_exceptions=True)
            finally:
                stop.set()
                refresher.cancel()
                await asyncio.gather(refresher, return_exceptions=True)
        return results

    async def _send_step(
        self,
        client: httpx.AsyncClient,
        stats: StepStats,
        rate: float,
        seconds: float,
        tasks: set[asyncio.Task[None]],
    ) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        total = round(rate * seconds)
        for i in range(total):
            # Evenly spaced arrivals: open loop, so a slow platform cannot slow the offered load.
            delay = start + i / max(rate, 1e-9) - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._cycle is None or self._in_flight >= self.max_in_flight:
                stats.dropped += 1
                continue
            stats.sent += 1
            self._in_flight += 1
            task = asyncio.create_task(self._one(client, next(self._cycle), stats))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        remaining = start + seconds - loop.time()
        if remaining > 0:
            await asyncio.sleep(remaining)


async def _main(args: argparse.Namespace) -> None:
    trace = load_trace(Path(args.trace))
    values = [float(v) for v in trace.values[args.start : args.start + args.steps]]
    async with httpx.AsyncClient(timeout=5.0) as cmdb:
        gen = LoadGenerator(cmdb_endpoints(cmdb, args.cmdb, args.app))
        results = await gen.replay(
            values,
            args.peak_rps,
            args.step_seconds,
            on_step=lambda s: print(json.dumps(s.summary())),
        )
    served = sum(s.ok for s in results)
    offered = sum(s.sent + s.dropped for s in results)
    print(f"served {served} of {offered} requests offered")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trace", required=True)
    parser.add_argument("--app", required=True)
    parser.add_argument("--cmdb", default="http://127.0.0.1:8001")
    parser.add_argument("--start", type=int, default=0, help="first trace step")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--step-seconds", type=float, default=2.0)
    parser.add_argument("--peak-rps", type=float, default=200.0)
    asyncio.run(_main(parser.parse_args()))
