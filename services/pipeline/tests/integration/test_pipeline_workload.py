"""The sample workload as the local driver runs it: a zipapp process with health, load, metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ooda.testing import REPO, free_port

pytestmark = pytest.mark.integration

WORKLOAD = REPO / "examples" / "workload"
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("workload") / "workload.pyz"
    subprocess.run([sys.executable, "-m", "zipapp", str(WORKLOAD), "-o", str(out)], check=True)
    return out


class Instance:
    def __init__(self, pyz: Path, **env: str) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, str(pyz), "--port", str(self.port)],
            env={"PATH": os.environ["PATH"], "WORKLOAD_WARMUP_SECONDS": "0", **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def get(self, path: str) -> tuple[int, str]:
        try:
            with DIRECT.open(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def wait_up(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                self.get("/healthz")
                return
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.02)
        self.stop()
        assert self.process.stdout is not None
        raise AssertionError(f"workload did not start: {self.process.stdout.read()[-2000:]!r}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(5)


@pytest.fixture
def start(pyz: Path) -> Iterator[type[Instance]]:
    started: list[Instance] = []

    def make(**env: str) -> Instance:
        instance = Instance(pyz, **env)
        started.append(instance)
        return instance

    yield make  # type: ignore[misc]
    for instance in started:
        instance.stop()


def test_the_zipapp_starts_fast_is_ready_and_serves_parseable_metrics(start: type) -> None:
    began = time.monotonic()
    instance = start(WORKLOAD_APP="shop", WORKLOAD_VERSION="v1", WORKLOAD_INSTANCE="shop-1")
    instance.wait_up()
    assert time.monotonic() - began < 2.0
    assert instance.get("/readyz")[0] == 200
    assert instance.get("/work")[0] == 200
    status, text = instance.get("/metrics")
    assert status == 200
    families = {family.name: family for family in text_string_to_metric_families(text)}
    # the parser strips `_total` from counter family names
    assert {"http_requests", "http_request_duration_seconds", "http_requests_in_flight"} <= set(
        families
    )
    assert {"process_cpu_seconds", "app_ready"} <= set(families)
    assert families["http_request_duration_seconds"].type == "histogram"
    (ok,) = [s for s in families["http_requests"].samples if s.labels["status"] == "200"]
    assert ok.value == 1 and ok.labels["version"] == "v1" and ok.labels["instance"] == "shop-1"
    assert families["app_ready"].samples[0].value == 1


def test_requests_beyond_capacity_are_refused_and_latency_grows_with_load(start: type) -> None:
    instance = start(WORKLOAD_CAPACITY_RPS="10")
    instance.wait_up()
    timings, statuses = [], []
    for _ in range(14):
        t0 = time.monotonic()
        statuses.append(instance.get("/work")[0])
        timings.append(time.monotonic() - t0)
    assert statuses[:10] == [200] * 10
    assert set(statuses[10:]) == {503}
    assert sum(timings[7:10]) > sum(timings[:3])


def test_failure_switches_make_a_version_exit_stay_unready_or_return_errors(start: type) -> None:
    exits = start(WORKLOAD_FAIL="start")
    assert exits.process.wait(10) != 0
    unhealthy = start(WORKLOAD_FAIL="unhealthy")
    unhealthy.wait_up()
    assert unhealthy.get("/readyz")[0] == 503
    errors = start(WORKLOAD_FAIL="errors", WORKLOAD_CAPACITY_RPS="1000")
    errors.wait_up()
    assert sorted(errors.get("/work")[0] for _ in range(4)) == [200, 200, 500, 500]


def test_sigterm_lets_the_request_in_flight_finish_then_exits(start: type) -> None:
    instance = start(WORKLOAD_CAPACITY_RPS="1.05")
    instance.wait_up()
    instance.get("/work")  # at utilisation ~1 the next request takes ~0.25 s
    answers: list[int] = []
    worker = threading.Thread(target=lambda: answers.append(instance.get("/work")[0]))
    worker.start()
    time.sleep(0.05)
    instance.process.send_signal(signal.SIGTERM)
    assert instance.process.wait(10) == 0
    worker.join(5)
    assert answers == [200]
