"""The load generator against real HTTP servers that come and go."""

from __future__ import annotations

import importlib.util
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ooda.testing import REPO

pytestmark = pytest.mark.unit

spec = importlib.util.spec_from_file_location("loadgen", REPO / "examples" / "loadgen.py")
assert spec and spec.loader
loadgen = importlib.util.module_from_spec(spec)
sys.modules["loadgen"] = loadgen  # dataclasses look their module up here
spec.loader.exec_module(loadgen)


class Counting(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.hits += 1  # type: ignore[attr-defined]
        status = 500 if self.server.broken else 200  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def servers() -> Iterator[list[ThreadingHTTPServer]]:
    started = []
    for broken in (False, False, True):
        server = ThreadingHTTPServer(("127.0.0.1", 0), Counting)
        server.hits, server.broken = 0, broken  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
    yield started
    for server in started:
        server.shutdown()


async def test_the_rate_follows_the_trace_and_spreads_over_instances_as_they_change(
    servers: list[ThreadingHTTPServer],
) -> None:
    urls = [f"http://127.0.0.1:{s.server_address[1]}" for s in servers]
    current = urls[:1]

    async def endpoints() -> list[str]:
        return list(current)

    gen = loadgen.LoadGenerator(endpoints, path="/")
    seen: list[int] = []

    def on_step(stats: object) -> None:
        seen.append(stats.step)  # type: ignore[attr-defined]
        if stats.step == 0:  # type: ignore[attr-defined]
            current[:] = urls  # the platform scaled out: two more instances, one broken

    results = await gen.replay([10.0, 20.0, 20.0], peak_rps=40.0, step_seconds=1.5, on_step=on_step)
    assert seen == [0, 1, 2]
    assert [round(r.target_rps) for r in results] == [20, 40, 40]
    assert results[0].sent == 30 and results[0].ok == 30 and results[0].failed == 0
    assert servers[0].hits >= 30 and servers[1].hits > 0 and servers[2].hits > 0
    assert sum(r.failed for r in results[1:]) == servers[2].hits
    assert sum(r.sent for r in results) == sum(s.hits for s in servers)


async def test_no_instances_means_dropped_requests_not_errors() -> None:
    async def none() -> list[str]:
        return []

    (stats,) = await loadgen.LoadGenerator(none).replay([5.0], peak_rps=10, step_seconds=1.0)
    assert (stats.sent, stats.dropped, stats.failed) == (0, 10, 0)


async def test_an_instance_that_is_gone_is_ejected_and_its_requests_go_elsewhere(
    servers: list[ThreadingHTTPServer],
) -> None:
    from ooda.testing import free_port

    alive = f"http://127.0.0.1:{servers[0].server_address[1]}"
    gone = f"http://127.0.0.1:{free_port()}"  # the CMDB still lists it; nothing listens

    async def endpoints() -> list[str]:
        return [alive, gone]

    gen = loadgen.LoadGenerator(endpoints, path="/")
    stats = await gen.replay([1.0, 1.0], 20.0, 1.0)
    sent = sum(s.sent for s in stats)
    retried = sum(s.retried for s in stats)
    # The first request to the gone instance is retried on the live one; then it is out of the
    # rotation (ejected for 5 s, longer than the run), so nothing fails.
    assert sum(s.failed for s in stats) == 0
    assert retried == 1
    assert servers[0].hits == sent  # type: ignore[attr-defined]
