"""Gates: the readiness probe on real sockets, and the monitor's metric gate (its verdict on
windows, and its reads over a fake HTTP transport)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import socket
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from ooda.auth import verify_token
from pipeline.bootstrap import build
from pipeline.cmdb import spec_from_json
from pipeline.config import Settings
from pipeline.gates import (
    GateInstance,
    Limits,
    MonitorGate,
    ProbeError,
    Window,
    http_status,
    judge,
    limits_from,
    wait_ready,
)
from pipeline.simulated import SimulatedDriver

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def window(n: int, error: float | None, p99: float | None = 20.0, rate: float | None = 10.0):
    return Window(T0 + timedelta(seconds=n), error, p99, rate)


def test_the_error_rate_is_weighted_by_the_windows_request_rates() -> None:
    limits = Limits(max_error_rate=0.05)
    # 10 rps at 0% and 1 rps at 50%: 0.5/11 = 4.5% overall, under the limit.
    assert judge([window(0, 0.0, rate=10.0), window(1, 0.5, rate=1.0)], limits) == (None, 2)
    reason, seen = judge([window(0, 0.0, rate=1.0), window(1, 0.5, rate=10.0)], limits)
    assert seen == 2 and reason is not None and "error rate 45.45%" in reason


def test_latency_is_judged_on_its_own_limit_and_missing_values_are_skipped() -> None:
    limits = Limits(max_error_rate=0.01, max_latency_p99_ms=100.0)
    slow = [window(0, 0.0, p99=150.0), window(1, None, p99=None, rate=None)]
    reason, seen = judge(slow, limits)
    assert seen == 1 and reason is not None and "p99 latency 150 ms" in reason
    assert "error rate" not in reason
    assert judge([window(0, None, p99=None, rate=None)], limits) == (None, 0)
    assert judge(slow, Limits()) == (None, 1)  # no limits: nothing to fail


def test_limits_come_from_the_spec_slo_unless_the_settings_name_them() -> None:
    assert limits_from((0.99, 250.0)) == Limits(pytest.approx(0.01), 250.0)
    assert limits_from((0.99, 250.0), 0.2, None) == Limits(0.2, 250.0)
    assert limits_from((None, None), None, 80.0) == Limits(None, 80.0)
    spec = spec_from_json("shop", None, {"slo": {"availability": 0.995, "latency_p99_ms": 300}})
    assert (spec.slo_availability, spec.slo_latency_p99_ms) == (0.995, 300.0)
    assert spec_from_json("shop", None, {}).slo_availability is None


class FakeMonitor:
    """The monitor's range API over a MockTransport: windows appear as (fake) time passes."""

    def __init__(
        self, values: dict[str, float | None], step_s: float = 0.05, fixed: int | None = None
    ) -> None:
        self.values = values
        self.step_s = step_s
        self.fixed = fixed  # when set, always exactly this many windows from `start` on
        self.began = datetime.now(UTC)
        self.asked: list[dict[str, str]] = []
        self.fail = False
        self.announced: list[tuple[datetime, dict[str, Any], str | None]] = []
        self.announce_answer: httpx.Response | Exception = httpx.Response(
            200, json={"app": "shop", "scrape_interval_s": 0.2, "targets": []}
        )
        self.withdrawn: list[tuple[list[str], str | None]] = []
        self.withdraw_answer: httpx.Response | Exception = httpx.Response(
            200, json={"app": "shop", "withdrawn": []}
        )

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/apps/shop/announced-targets/withdraw":
            ids = json.loads(request.content)["instance_ids"]
            self.withdrawn.append((ids, request.headers.get("authorization")))
            if isinstance(self.withdraw_answer, Exception):
                raise self.withdraw_answer
            return self.withdraw_answer
        if request.method == "POST":
            assert request.url.path == "/v1/apps/shop/announced-targets"
            body = json.loads(request.content)
            self.announced.append((datetime.now(UTC), body, request.headers.get("authorization")))
            if isinstance(self.announce_answer, Exception):
                raise self.announce_answer
            return self.announce_answer
        self.asked.append(dict(request.url.params))
        if self.fail:
            return httpx.Response(503, json={"detail": "down"})
        assert request.url.path == "/v1/apps/shop/metrics"
        metric = request.url.params["metric"]
        start = datetime.fromisoformat(request.url.params["start"])
        now = datetime.now(UTC)
        step = timedelta(seconds=self.step_s)
        points = []
        moment = self.began
        if self.fixed is not None:
            moment, now = start, start + self.fixed * step
        while moment + step <= now:  # complete windows only, from `start` on
            if moment >= start:
                points.append(
                    {
                        "window_start": moment.isoformat(),
                        "window_end": (moment + step).isoformat(),
                        "value": self.values.get(metric),
                    }
                )
            moment += step
        return httpx.Response(
            200, json={"app": "shop", "metric": metric, "step_s": self.step_s, "points": points}
        )


def gate(monitor: FakeMonitor, limits: Limits, observe_s: float = 0.5, **more: Any) -> MonitorGate:
    async def limits_of(app: str) -> Limits:
        assert app == "shop"
        return limits

    return MonitorGate(
        "http://monitor.test/",
        limits_of,
        observe_s=observe_s,
        poll_s=0.06,
        transport=httpx.MockTransport(monitor.handle),
        **more,
    )


BATCH = [
    GateInstance("shop-v2-a", "shop", "v2", "z1", "http://127.0.0.1:9101"),
    GateInstance("shop-v2-b", "shop", "v2", "z2", "http://127.0.0.1:9102"),
]


async def test_a_batch_that_raises_the_error_rate_fails_before_the_window_ends() -> None:
    monitor = FakeMonitor({"error_rate": 0.5, "latency_p99_ms": 12.0, "request_rate": 20.0})
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    reason = await gate(monitor, Limits(max_error_rate=0.001), observe_s=5.0).check("shop", [])
    assert reason is not None and reason.startswith("error rate 50.00%")
    assert loop.time() - t0 < 2.0  # it did not wait out the 5 s window
    assert {q["metric"] for q in monitor.asked} == {"error_rate", "latency_p99_ms", "request_rate"}
    started = {datetime.fromisoformat(q["start"]) for q in monitor.asked}
    assert len(started) == 1 and next(iter(started)) >= monitor.began  # from the batch on


async def test_a_healthy_application_passes_once_the_window_is_over() -> None:
    monitor = FakeMonitor({"error_rate": 0.0005, "latency_p99_ms": 80.0, "request_rate": 20.0})
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert await gate(monitor, Limits(0.001, 100.0), observe_s=0.4).check("shop", []) is None
    assert loop.time() - t0 >= 0.4


async def test_no_traffic_passes_and_a_single_bad_window_fails_only_at_the_end() -> None:
    quiet = FakeMonitor({"error_rate": None, "latency_p99_ms": None, "request_rate": 0.0})
    assert await gate(quiet, Limits(0.001, 100.0), observe_s=0.3).check("shop", []) is None
    # Only one window of data, fewer than the gate fails early on: judged at the end, failed.
    once = FakeMonitor({"error_rate": 0.3, "request_rate": 5.0}, fixed=1)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    reason = await gate(once, Limits(0.001), observe_s=0.4).check("shop", [])
    assert reason is not None and "over 1 window(s)" in reason
    assert loop.time() - t0 >= 0.4


async def test_an_unreadable_monitor_does_not_hold_the_rollout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = FakeMonitor({})
    down.fail = True
    with caplog.at_level(logging.WARNING, logger="pipeline.gates"):
        assert await gate(down, Limits(0.001), observe_s=0.2).check("shop", []) is None
    assert "cannot read shop's metrics" in caplog.text


async def test_the_batch_is_announced_and_only_windows_after_its_first_scrape_count() -> None:
    monitor = FakeMonitor({"error_rate": 0.5, "latency_p99_ms": 12.0, "request_rate": 20.0})
    checking = gate(
        monitor,
        Limits(max_error_rate=0.001),
        observe_s=5.0,
        token=lambda: "the-token",
        announce_ttl_s=120.0,
    )
    reason = await checking.check("shop", BATCH)
    assert reason is not None and reason.startswith("error rate 50.00%")
    [(at, body, authorization)] = monitor.announced
    assert authorization == "Bearer the-token"
    assert body == {
        "targets": [
            {
                "instance_id": "shop-v2-a",
                "endpoint": "127.0.0.1:9101",
                "version": "v2",
                "zone": "z1",
            },
            {
                "instance_id": "shop-v2-b",
                "endpoint": "127.0.0.1:9102",
                "version": "v2",
                "zone": "z2",
            },
        ],
        "ttl_seconds": 120.0,
    }
    # The windows read start one scrape interval (0.2 s, from the answer) after the announce.
    started = {datetime.fromisoformat(q["start"]) for q in monitor.asked}
    assert len(started) == 1
    assert next(iter(started)) - at >= timedelta(seconds=0.2)


async def test_the_observation_lasts_one_scrape_interval_longer_after_an_announce() -> None:
    healthy = {"error_rate": 0.0, "latency_p99_ms": 10.0, "request_rate": 20.0}
    monitor = FakeMonitor(healthy)
    monitor.announce_answer = httpx.Response(200, json={"scrape_interval_s": 0.3, "targets": []})
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert await gate(monitor, Limits(0.001), observe_s=0.3).check("shop", BATCH) is None
    assert loop.time() - t0 >= 0.6
    assert len(monitor.announced) == 1


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(401, json={"detail": "missing bearer token"}),
        httpx.Response(422, json={"detail": [{"loc": ["body", "targets", 0, "endpoint"]}]}),
        httpx.Response(200, json=["not", "an", "object"]),
        httpx.Response(200, content=b"not json"),
        httpx.ConnectError("refused"),
    ],
    ids=["unauthorized", "refused", "odd-answer", "not-json", "unreachable"],
)
async def test_a_failed_announce_is_logged_and_the_gate_still_judges(
    answer: httpx.Response | Exception, caplog: pytest.LogCaptureFixture
) -> None:
    monitor = FakeMonitor({"error_rate": 0.5, "latency_p99_ms": 12.0, "request_rate": 20.0})
    monitor.announce_answer = answer
    before = datetime.now(UTC)
    with caplog.at_level(logging.WARNING, logger="pipeline.gates"):
        reason = await gate(monitor, Limits(max_error_rate=0.001), observe_s=5.0).check(
            "shop", BATCH
        )
    assert reason is not None and reason.startswith("error rate 50.00%")
    assert "cannot announce shop's new instances" in caplog.text
    assert len(monitor.announced) == 1
    # Without an announce, the windows count from the batch on, as before.
    started = {datetime.fromisoformat(q["start"]) for q in monitor.asked}
    assert len(started) == 1 and next(iter(started)) - before < timedelta(seconds=0.2)


async def test_an_odd_scrape_interval_in_the_answer_does_not_stall_the_gate() -> None:
    monitor = FakeMonitor({"error_rate": 0.0, "request_rate": 20.0})
    monitor.announce_answer = httpx.Response(200, json={"scrape_interval_s": 1e9, "targets": []})
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    checking = gate(monitor, Limits(0.001), observe_s=0.2, scrape_interval_s=0.1)
    assert await checking.check("shop", BATCH) is None
    assert 0.3 <= loop.time() - t0 < 2.0  # its own interval instead


async def test_stopped_instances_are_withdrawn_in_chunks_with_the_token() -> None:
    monitor = FakeMonitor({})
    stopped = [f"shop-v2-{n}" for n in range(2500)]
    await gate(monitor, Limits(0.001), token=lambda: "t0k").forget("shop", stopped)
    assert [len(ids) for ids, _ in monitor.withdrawn] == [1000, 1000, 500]
    assert [i for ids, _ in monitor.withdrawn for i in ids] == stopped
    assert {auth for _, auth in monitor.withdrawn} == {"Bearer t0k"}


@pytest.mark.parametrize(
    "answer",
    [httpx.Response(403, json={"detail": "no"}), httpx.ConnectError("refused")],
    ids=["refused", "unreachable"],
)
async def test_a_failed_withdrawal_is_logged_and_does_not_fail_the_stop(
    answer: httpx.Response | Exception, caplog: pytest.LogCaptureFixture
) -> None:
    monitor = FakeMonitor({})
    monitor.withdraw_answer = answer
    with caplog.at_level(logging.WARNING, logger="pipeline.gates"):
        await gate(monitor, Limits(0.001)).forget("shop", ["shop-v2-a", "shop-v2-b"])
    assert len(monitor.withdrawn) == 1
    assert "cannot withdraw shop's stopped instances" in caplog.text


async def test_a_batch_without_new_instances_announces_nothing() -> None:
    monitor = FakeMonitor({"error_rate": 0.0, "request_rate": 20.0})
    assert await gate(monitor, Limits(0.001), observe_s=0.2).check("shop", []) is None
    assert monitor.announced == []


def test_the_gate_is_built_only_when_the_monitor_url_is_set(tmp_path: Path) -> None:
    class NoCmdb:
        async def owner(self, app: str) -> str | None:
            return None

        async def spec(self, app: str) -> Any:
            raise LookupError(app)

        async def hosts(self) -> list[Any]:
            return []

    # Settings read the environment; a unit test names what it needs.
    required = {
        "database_url": "postgresql+asyncpg://pipeline:unused@127.0.0.1:1/pipeline",
        "auth_secret": "a-secret-of-the-test-that-is-long-enough-0123456789",
    }
    with SimulatedDriver() as driver:
        off = Settings(data_dir=tmp_path, monitor_url="", **required)
        assert build(off, cmdb=NoCmdb(), driver=driver).gates == []
        on = Settings(
            data_dir=tmp_path,
            monitor_url="http://127.0.0.1:8003",
            gate_max_error_rate=0.1,
            **required,
        )
        (built,) = build(on, cmdb=NoCmdb(), driver=driver).gates
        assert isinstance(built, MonitorGate) and built.monitor_url == "http://127.0.0.1:8003"
        assert asyncio.run(built.limits("shop")) == Limits(0.1, None)  # no spec: settings only
        # It announces instances with a `deploy` token of its own, signed with the secret.
        assert built.token is not None
        actor = verify_token(required["auth_secret"], built.token(), "monitor")
        assert actor.subject == "service:pipeline" and actor.has("deploy")


# --- the readiness probe ----------------------------------------------------------------------


@contextlib.contextmanager
def serving(status: int, body: bytes, length: bool = True) -> Iterator[tuple[str, list[str]]]:
    """A stdlib HTTP server answering `status` with `body`; its URL and the errors it hit."""
    errors: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1" if length else "HTTP/1.0"

        def do_GET(self) -> None:
            self.send_response(status)
            if length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            errors.append(repr(sys.exc_info()[1]))

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", errors
    finally:
        server.shutdown()
        server.server_close()


async def test_the_probe_reads_the_status_and_the_whole_answer() -> None:
    with serving(503, b'{"ready": false}' * 100) as (url, errors):
        assert await http_status(url + "/readyz?x=1") == 503
        reason = await wait_ready(url + "/readyz", 0.3, lambda: True, interval_s=0.05)
        assert reason == "not ready within 0.3s (last: answered 503)"
    assert errors == []  # the answer was read to its end: the server never wrote into a reset
    with serving(200, b"ok", length=False) as (url, errors):  # ends with the connection
        assert await http_status(url) == 200
        assert await wait_ready(url, 1.0, lambda: True) is None
    assert errors == []
    with SimulatedDriver() as driver:
        assert await http_status(f"http://127.0.0.1:{driver.port}/readyz") == 200


async def test_the_probe_tells_refused_garbage_and_silent_answers_apart() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        await http_status(f"http://127.0.0.1:{port}/readyz")
    assert (
        await wait_ready(f"http://127.0.0.1:{port}/readyz", 0.2, lambda: True, interval_s=0.05)
        == "not ready within 0.2s (last: ConnectionRefusedError)"
    )
    with pytest.raises(ProbeError):
        await http_status("https://127.0.0.1:1/readyz")

    async def answer(text: bytes | None, reader: Any, writer: Any) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if text is not None:
            writer.write(text)
            writer.close()
        else:
            await asyncio.sleep(5)  # never answers

    garbage = await asyncio.start_server(
        functools.partial(answer, b"SSH-2.0-nope\r\n"), "127.0.0.1", 0
    )
    silent = await asyncio.start_server(functools.partial(answer, None), "127.0.0.1", 0)
    async with garbage, silent:
        with pytest.raises(ProbeError):
            await http_status(f"http://127.0.0.1:{garbage.sockets[0].getsockname()[1]}/")
        with pytest.raises(TimeoutError):
            await http_status(f"http://127.0.0.1:{silent.sockets[0].getsockname()[1]}/", 0.2)
    assert await wait_ready("http://127.0.0.1:1/", 5.0, lambda: False) == "its process exited"
