"""The local driver with real workload processes: one process per id, adoption, graceful stop."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipapp
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ooda.testing import REPO
from pipeline.bootstrap import build
from pipeline.config import Settings
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
        # A restarted pipeline knows the instance by its process's environment, which the child
        # has once it exec'd (on a loaded machine, some time after start returns).
        deadline = time.monotonic() + 10
        while not runs_instance(started.pid, "shop-1") and time.monotonic() < deadline:
            time.sleep(0.01)
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


PROBE = """\
import json, os
report = {"uid": os.getuid(), "env": dict(os.environ)}
for name, path in (
    ("pipeline_environ", f"/proc/{os.getppid()}/environ"),
    ("secret_file", os.environ["PROBE_FILE"]),
):
    try:
        with open(path, "rb") as file:
            report[name] = file.read().decode(errors="replace")
    except OSError as error:
        report[name] = f"refused: {error.strerror}"
print("PROBE " + json.dumps(report), flush=True)
"""


@pytest.fixture
def secret_file() -> Iterator[Path]:
    """A mode-600 file of the pipeline's in a folder anyone may enter (as `.local/ooda.env` is)."""
    folder = Path(tempfile.mkdtemp(prefix="ooda-secret-"))
    try:
        folder.chmod(0o755)
        secret = folder / "ooda.env"
        secret.write_text("OODA_AUTH_SECRET=the-pipelines-own-secret\n")
        secret.chmod(0o600)
        yield secret
    finally:
        shutil.rmtree(folder)


def run_probe(tmp_path: Path, secret_file: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run a workload that reports who it runs as and what it can read, the way the pipeline
    runs instances (its settings, its artifact store, its driver); its report."""
    monkeypatch.setenv("PIPELINE_PROBE_SECRET", "in-the-pipelines-environment")
    source = tmp_path / "probe"
    source.mkdir()
    (source / "__main__.py").write_text(PROBE)
    zipapp.create_archive(source, tmp_path / "probe.pyz")
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url="postgresql+asyncpg://pipeline:unused@127.0.0.1:1/pipeline",
        auth_secret="a-secret-of-the-test-that-is-long-enough-0123456789",
    )
    parts = build(settings)
    sha, _, _ = parts.artifacts.save((tmp_path / "probe.pyz").read_bytes())
    spec = InstanceSpec(
        id="probe-1",
        app="shop",
        version="v1",
        host="h1",
        zone="z1",
        artifact=parts.artifacts.on_host(sha, "h1").path,
        env={"PROBE_FILE": str(secret_file)},
    )
    try:
        parts.driver.start(spec)
        deadline = time.monotonic() + 10
        while parts.driver.alive("probe-1") and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        parts.driver.stop("probe-1")
    log = (settings.data_dir / "instances" / "probe-1" / "out.log").read_text()
    lines = [line for line in log.splitlines() if line.startswith("PROBE ")]
    assert lines, log
    report: dict[str, Any] = json.loads(lines[-1].removeprefix("PROBE "))
    return report


def test_a_workload_gets_only_its_own_environment(
    tmp_path: Path, secret_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = run_probe(tmp_path, secret_file, monkeypatch)
    env = report["env"]
    assert "PIPELINE_PROBE_SECRET" not in env
    assert not any(name.startswith(("OODA_", "PIPELINE_")) for name in env)
    # Not the pipeline's PATH either (it may name its virtualenv or private folders).
    assert env["PATH"] == "/usr/local/bin:/usr/bin:/bin"
    assert env["WORKLOAD_INSTANCE"] == "probe-1"
    # Python may set LC_CTYPE itself (PEP 538); nothing else is there unasked.
    assert set(env) - {"LC_CTYPE"} == {
        "PATH",
        "PROBE_FILE",
        "WORKLOAD_APP",
        "WORKLOAD_VERSION",
        "WORKLOAD_INSTANCE",
        "WORKLOAD_ZONE",
        "WORKLOAD_HOST",
    }


@pytest.mark.skipif(os.geteuid() != 0, reason="only a pipeline running as root can switch users")
def test_a_workload_runs_as_its_own_user_and_cannot_read_the_pipelines_secrets(
    tmp_path: Path, secret_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = run_probe(tmp_path, secret_file, monkeypatch)
    assert report["uid"] != os.getuid()
    assert report["uid"] == pwd.getpwnam("ooda-workload").pw_uid
    assert report["pipeline_environ"].startswith("refused: "), "read the pipeline's environ"
    assert report["secret_file"] == "refused: Permission denied"


@pytest.mark.skipif(os.geteuid() != 0, reason="only a pipeline running as root can switch users")
def test_an_interpreter_the_workload_user_cannot_run_stops_the_pipeline_at_start_up(
    tmp_path: Path,
) -> None:
    private = tmp_path / "private" / "python3"  # under pytest's own folder, mode 700
    private.parent.mkdir(mode=0o700)
    private.write_text("#!/bin/sh\nexit 0\n")
    private.chmod(0o755)
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url="postgresql+asyncpg://pipeline:unused@127.0.0.1:1/pipeline",
        auth_secret="a-secret-of-the-test-that-is-long-enough-0123456789",
        python=str(private),
    )
    with pytest.raises(RuntimeError, match="the workload user ooda-workload cannot run"):
        build(settings)
    build(settings.model_copy(update={"python": "python3"}))  # found on the workloads' PATH
