"""Health gates a batch must pass: each new instance's readiness, then any metric gates.

`MonitorGate` is the metric gate on the monitor's HTTP API (error rate and p99 latency of the
application against its SLO); `judge` is its verdict on the windows it read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

import h11
import httpx

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateInstance:
    """A new instance of a batch, as gates see it."""

    id: str
    app: str
    version: str
    zone: str
    endpoint: str


class MetricGate(Protocol):
    """A verdict on a batch from observed metrics (error rate, latency): None passes, else why."""

    async def check(self, app: str, new: Sequence[GateInstance]) -> str | None:
        """Return None when the batch looks healthy, or the reason it does not."""
        ...

    async def forget(self, app: str, stopped: Sequence[str]) -> None:
        """These instances stopped (a batch rolled back, a scale-in): stop observing them."""
        ...


class ProbeError(Exception):
    """A readiness probe got no HTTP answer it could read."""


_MAX_ANSWER = 64 * 1024  # a readiness answer is small; a longer one is not read further


async def http_status(url: str, timeout_s: float = 2.0) -> int:
    """The status of an HTTP/1.1 `GET url`, over a connection of its own (h11 speaks HTTP).

    Readiness probes need the status only. Each batch probes its instances by the hundred, and
    a request through a full HTTP client (connection pool, instrumentation) costs several times
    what this one does. The answer is read to its end (or `_MAX_ANSWER`), so the instance never
    writes into a closed socket.
    """
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ProbeError(f"not a plain http URL: {url}")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn = h11.Connection(our_role=h11.CLIENT)
    request = conn.send(
        h11.Request(
            method="GET",
            target=target,
            headers=[
                ("Host", parts.netloc),
                ("Connection", "close"),
                ("User-Agent", "ooda-pipeline-readiness"),
            ],
        )
    )
    status: int | None = None
    read = 0
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
        try:
            writer.write(request + (conn.send(h11.EndOfMessage()) or b""))
            while True:
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError as exc:
                    raise ProbeError(f"not an HTTP answer: {exc}") from exc
                if event is h11.NEED_DATA:
                    data = await reader.read(16 * 1024)
                    read += len(data)
                    conn.receive_data(data)
                    if data and read < _MAX_ANSWER:
                        continue
                    if status is None:
                        raise ProbeError("the connection closed before an answer")
                    break
                if isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    break
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    if status is None:
        raise ProbeError("no answer")
    return status


async def wait_ready(
    url: str,
    timeout_s: float,
    alive: Callable[[], bool],
    interval_s: float = 0.1,
    limit: asyncio.Semaphore | None = None,
) -> str | None:
    """Poll `url` until it answers 200: None when it did in time, else why not.

    `limit`, shared by the probes of a batch, bounds how many of them are in flight at once.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    last = "no answer"
    while loop.time() < deadline:
        if not alive():
            return "its process exited"
        try:
            async with limit or contextlib.nullcontext():
                status = await http_status(url, timeout_s=2.0)
            if status == 200:
                return None
            last = f"answered {status}"
        except (OSError, TimeoutError, ProbeError, asyncio.IncompleteReadError) as error:
            last = type(error).__name__
        await asyncio.sleep(interval_s)
    return f"not ready within {timeout_s:g}s (last: {last})"


# --- the monitor's metric gate --------------------------------------------------------------

ERROR_RATE = "error_rate"  # the monitor's per-application aggregates (its `Metric` names)
LATENCY_P99_MS = "latency_p99_ms"
REQUEST_RATE = "request_rate"
_WITHDRAW_CHUNK = 1000  # instance ids per withdrawal request (the monitor takes at most 1,000)
_MAX_SKIP_S = 60.0  # the longest scrape interval the gate waits out after an announce


@dataclass(frozen=True)
class Limits:
    """The most an application may show while a batch is observed; None does not check."""

    max_error_rate: float | None = None
    max_latency_p99_ms: float | None = None


@dataclass(frozen=True)
class Window:
    """One of the monitor's windows of an application: its aggregates, None without data."""

    start: datetime
    error_rate: float | None
    latency_p99_ms: float | None
    request_rate: float | None


def windows_from_ranges(ranges: dict[str, Any]) -> list[Window]:
    """Windows from the monitor's answers to `GET /v1/apps/{app}/metrics`, one per metric."""
    by_start: dict[datetime, dict[str, float | None]] = {}
    for metric, answer in ranges.items():
        for point in answer.get("points", []):
            start = datetime.fromisoformat(point["window_start"])
            value = point.get("value")
            by_start.setdefault(start, {})[metric] = None if value is None else float(value)
    return [
        Window(
            start=start,
            error_rate=values.get(ERROR_RATE),
            latency_p99_ms=values.get(LATENCY_P99_MS),
            request_rate=values.get(REQUEST_RATE),
        )
        for start, values in sorted(by_start.items())
    ]


def _mean(pairs: list[tuple[float, float | None]]) -> float:
    """The mean of the values, weighted by request rate when every window has one."""
    weights = [w for _, w in pairs]
    if all(w is not None and w > 0 for w in weights):
        total = sum(w for w in weights if w is not None)
        return sum(v * w for v, w in pairs if w is not None) / total
    return sum(v for v, _ in pairs) / len(pairs)


def judge(windows: Sequence[Window], limits: Limits) -> tuple[str | None, int]:
    """The verdict on the observed windows, and how many windows had data to judge by.

    The error rate and the p99 latency are each averaged over the windows that have them
    (weighted by the windows' request rates), and compared with their limits: the first one
    over its limit is the reason the batch fails.
    """
    errors = [(w.error_rate, w.request_rate) for w in windows if w.error_rate is not None]
    latencies = [
        (w.latency_p99_ms, w.request_rate) for w in windows if w.latency_p99_ms is not None
    ]
    seen = max(len(errors), len(latencies))
    reasons = []
    if limits.max_error_rate is not None and errors:
        rate = _mean([(v, w) for v, w in errors if v is not None])
        if rate > limits.max_error_rate:
            reasons.append(
                f"error rate {rate:.2%} over {len(errors)} window(s) exceeds "
                f"{limits.max_error_rate:.2%}"
            )
    if limits.max_latency_p99_ms is not None and latencies:
        p99 = _mean([(v, w) for v, w in latencies if v is not None])
        if p99 > limits.max_latency_p99_ms:
            reasons.append(
                f"p99 latency {p99:.0f} ms over {len(latencies)} window(s) exceeds "
                f"{limits.max_latency_p99_ms:g} ms"
            )
    return ("; ".join(reasons) or None), seen


class MonitorGate:
    """A `MetricGate` reading the application's aggregates from the monitor's HTTP API.

    Once a batch's instances are ready, it watches the application's windows that start after
    that moment, for up to `observe_s`: the batch fails as soon as `min_windows` windows (or,
    at the end, any windows) put the error rate or the p99 latency over the application's
    limits (`limits(app)`: from its spec's SLO targets or the settings). No data (no traffic)
    passes. A monitor that cannot be read does not hold rollouts up: the gate logs it and
    passes, so that a monitor outage does not roll back every change.

    The CMDB lists an application's instances only once a change has ended, so before
    observing, the gate announces the batch's new instances to the monitor
    (`POST /v1/apps/{app}/announced-targets`, with a `deploy` token from `token()`) for
    `announce_ttl_s`. The monitor's first scrape of an instance only primes its counters, so
    only windows starting one scrape interval after the announce count, and the observation
    lasts that much longer. A failed announce is logged and the gate observes as before.
    """

    def __init__(
        self,
        monitor_url: str,
        limits: Callable[[str], Awaitable[Limits]],
        *,
        observe_s: float = 15.0,
        poll_s: float = 1.0,
        min_windows: int = 2,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        token: Callable[[], str] | None = None,
        announce_ttl_s: float = 600.0,
        scrape_interval_s: float = 5.0,
    ) -> None:
        self.monitor_url = monitor_url.rstrip("/")
        self.limits = limits
        self.observe_s = observe_s
        self.poll_s = poll_s
        self.min_windows = min_windows
        self.transport = transport
        self.clock = clock
        self.token = token
        self.announce_ttl_s = announce_ttl_s
        self.scrape_interval_s = scrape_interval_s  # when the monitor's answer names none

    async def check(self, app: str, new: Sequence[GateInstance]) -> str | None:
        limits = await self.limits(app)
        if limits.max_error_rate is None and limits.max_latency_p99_ms is None:
            return None
        loop = asyncio.get_running_loop()
        windows: list[Window] = []
        async with httpx.AsyncClient(
            base_url=self.monitor_url, transport=self.transport, trust_env=False, timeout=5.0
        ) as client:
            since = await self.announce(client, app, new)
            wait_s = max(0.0, (since - self.clock()).total_seconds())
            deadline = loop.time() + wait_s + self.observe_s
            while True:
                await asyncio.sleep(max(0.0, min(self.poll_s, deadline - loop.time())))
                try:
                    windows = await self._windows(client, app, since)
                except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
                    log.warning("metric gate: cannot read %s's metrics: %s", app, error)
                else:
                    reason, seen = judge(windows, limits)
                    if reason is not None and seen >= self.min_windows:
                        return reason
                if loop.time() >= deadline:
                    break
        reason, seen = judge(windows, limits)
        if seen == 0:
            log.info("metric gate: no data for %s within %gs; passing", app, self.observe_s)
        return reason

    async def announce(
        self, client: httpx.AsyncClient, app: str, new: Sequence[GateInstance]
    ) -> datetime:
        """Announce the new instances to the monitor; when the windows that count begin."""
        if not new:
            return self.clock()
        body = {
            "targets": [
                {
                    "instance_id": instance.id,
                    "endpoint": host_port(instance.endpoint),
                    "version": instance.version,
                    "zone": instance.zone,
                }
                for instance in new
            ],
            "ttl_seconds": self.announce_ttl_s,
        }
        try:
            response = await client.post(
                f"/v1/apps/{app}/announced-targets", json=body, headers=self._headers()
            )
            if response.status_code != 200:
                raise ValueError(f"HTTP {response.status_code}: {response.text[:500]}")
            interval = float(response.json().get("scrape_interval_s", self.scrape_interval_s))
            if not 0.0 <= interval <= _MAX_SKIP_S:  # an odd answer (or NaN) must not stall it
                interval = self.scrape_interval_s
            skip = timedelta(seconds=interval)
        except (httpx.HTTPError, ValueError, TypeError, AttributeError) as error:
            log.warning(
                "metric gate: cannot announce %s's new instances to the monitor: %s", app, error
            )
            return self.clock()
        return self.clock() + skip

    async def forget(self, app: str, stopped: Sequence[str]) -> None:
        """Withdraw stopped instances from the monitor, which would otherwise try to scrape them
        until their announcement expires (`announce_ttl_s`); ids never announced are ignored.
        A monitor that cannot be reached is logged: the announcements then just expire."""
        try:
            async with httpx.AsyncClient(
                base_url=self.monitor_url, transport=self.transport, trust_env=False, timeout=5.0
            ) as client:
                for first in range(0, len(stopped), _WITHDRAW_CHUNK):
                    chunk = list(stopped[first : first + _WITHDRAW_CHUNK])
                    response = await client.post(
                        f"/v1/apps/{app}/announced-targets/withdraw",
                        json={"instance_ids": chunk},
                        headers=self._headers(),
                    )
                    if response.status_code != 200:
                        raise ValueError(f"HTTP {response.status_code}: {response.text[:500]}")
        except (httpx.HTTPError, ValueError) as error:
            log.warning(
                "metric gate: cannot withdraw %s's stopped instances from the monitor"
                " (their announcements expire within %gs): %s",
                app,
                self.announce_ttl_s,
                error,
            )

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"} if self.token is not None else {}

    async def _windows(self, client: httpx.AsyncClient, app: str, since: datetime) -> list[Window]:
        ranges = {}
        for metric in (ERROR_RATE, LATENCY_P99_MS, REQUEST_RATE):
            response = await client.get(
                f"/v1/apps/{app}/metrics", params={"metric": metric, "start": since.isoformat()}
            )
            response.raise_for_status()
            ranges[metric] = response.json()
        return windows_from_ranges(ranges)


def host_port(endpoint: str) -> str:
    """`host:port` of an instance endpoint given as `http://host:port` or already bare."""
    return urlsplit(endpoint).netloc if "://" in endpoint else endpoint


def limits_from(
    spec_slo: tuple[float | None, float | None],
    max_error_rate: float | None = None,
    max_latency_p99_ms: float | None = None,
) -> Limits:
    """Limits from the spec's SLO (availability, p99 ms); settings, when given, win."""
    availability, p99 = spec_slo
    return Limits(
        max_error_rate=(
            max_error_rate
            if max_error_rate is not None
            else (1.0 - availability if availability is not None else None)
        ),
        max_latency_p99_ms=max_latency_p99_ms if max_latency_p99_ms is not None else p99,
    )
