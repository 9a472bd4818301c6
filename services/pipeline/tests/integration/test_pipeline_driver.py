"""The local driver with real workload processes: one process per id, adoption, graceful stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ooda.testing import REPO
from pipeline.driver import InstanceSpec, LocalDriver, runs_instance

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wl") / "workload.pyz"
    subprocess.run(
        [sys.executable, "-m", "zipapp", str(REPO / "examples" / "workload"), "-o", str(out)],
        check=True,
    )
    return out


def test_the_local_driver_starts_once_per_id_adopts_after_restart_and_stops(
    tmp_path: Path, pyz: Path
) -> None:
    driver = LocalDriver(tmp_path, sys.executable, stop_timeout_s=3)
    spec = InstanceSpec(id="shop-1", app="shop", version="v1", host="h1", zone="z1", artifact=pyz)
    try:
        started = driver.start(spec)
        again = driver.start(spec)
        assert again.pid == started.pid and again.port == started.port
        assert driver.alive("shop-1")
        restarted = LocalDriver(tmp_path, sys.executable, stop_timeout_s=3)
        assert [r.id for r in restarted.running()] == ["shop-1"]
        restarted.stop("shop-1")
        deadline = time.monotonic() + 2
        while driver.alive("shop-1") and time.monotonic() < deadline:
            time.sleep(0.01)  # the process may still be tearing down; the parent collects it
        assert not driver.alive("shop-1")
        assert restarted.running() == []
    finally:
        driver.stop("shop-1")


def test_an_instance_that_exits_at_start_is_reported_with_its_log(
    tmp_path: Path, pyz: Path
) -> None:
    driver = LocalDriver(tmp_path, sys.executable)
    spec = InstanceSpec(
        id="bad-1",
        app="shop",
        version="v1",
        host="h1",
        zone="z1",
        artifact=pyz,
        env={"WORKLOAD_FAIL": "start"},
    )
    driver.start(spec)
    deadline = time.monotonic() + 10
    while driver.alive("bad-1") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not driver.alive("bad-1")
    assert "exited with code 3" in driver.describe_exit("bad-1")
    assert "WORKLOAD_FAIL=start" in driver.describe_exit("bad-1")


def test_a_process_whose_record_was_never_written_is_killed_on_restart(
    tmp_path: Path, pyz: Path
) -> None:
    driver = LocalDriver(tmp_path, sys.executable, stop_timeout_s=3)
    spec = InstanceSpec(id="shop-2", app="shop", version="v1", host="h1", zone="z1", artifact=pyz)
    started = driver.start(spec)
    try:
        deadline = time.monotonic() + 5
        while not runs_instance(started.pid, "shop-2") and time.monotonic() < deadline:
            time.sleep(0.01)  # until the child has exec'd the artifact
        (tmp_path / "instances" / "shop-2" / "instance.json").unlink()  # the crash came first
        restarted = LocalDriver(tmp_path, sys.executable, stop_timeout_s=3)
        assert restarted.running() == []
        deadline = time.monotonic() + 5
        while driver.alive("shop-2") and time.monotonic() < deadline:
            time.sleep(0.05)  # alive() also collects the killed child
        assert not Path(f"/proc/{started.pid}").exists()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(started.pid, signal.SIGKILL)
