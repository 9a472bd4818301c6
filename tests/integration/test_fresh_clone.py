"""A newcomer's first run: clone the repository alone, `make demo`, then `make down`.

The clone sits in an empty folder with nothing beside it (no shared data, no other checkout), and
runs on ports of its own so the suite's own Kafka and PostgreSQL are left alone. The demo must
find everything it needs inside the clone, print where its report is, and `make down` must leave
no process of that platform running and none of its ports listening.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ooda.testing import REPO, SERVICES, free_port

pytestmark = pytest.mark.integration

# Enough live steps for the platform to see load and decide; the README's run replays 240.
DEMO_MINUTES = 20
# Variables of the suite's own platform that must not leak into the newcomer's shell.
OWN_PLATFORM = re.compile(r"^(OODA_|PIPELINE_|CMDB_|MONITOR_|ELASTIC_|DECISION_|OODA_TEST_)")
# Every port the clone's platform listens on.
PORT_KEYS = (
    "OODA_KAFKA_PORT",
    "OODA_KAFKA_CONTROLLER_PORT",
    "OODA_PG_PORT",
    *(f"{name.upper()}_PORT" for name in SERVICES),
)


def newcomer_env(ports: dict[str, int]) -> dict[str, str]:
    """A shell as a newcomer has it, with the clone's ports moved off the suite's own."""
    env = {k: v for k, v in os.environ.items() if not OWN_PLATFORM.match(k)}
    env.pop("VIRTUAL_ENV", None)
    env.update({name: str(port) for name, port in ports.items()})
    return env


def listening_ports() -> set[int]:
    """Local TCP ports in LISTEN state (IPv4 and IPv6)."""
    found: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":
                    found.add(int(fields[1].rsplit(":", 1)[1], 16))
    return found


def platform_processes_of(roots: list[str]) -> dict[int, str]:
    """pid -> command line of every process whose command line or working folder is under `roots`."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if not cmdline:  # a zombie or kernel thread
            continue
        if any(root in cmdline or cwd.startswith(root + os.sep) for root in roots):
            found[int(entry.name)] = cmdline.strip()
    return found


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    """Run `cmd`, fail the test with its output's tail when it does not exit 0."""
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    out = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(cmd)} exited {result.returncode}:\n{out[-6000:]}"
    return out


@pytest.fixture
def lonely_clone() -> Iterator[tuple[Path, dict[str, str]]]:
    """A clone of this repository in an empty folder, on free ports; torn down whatever happens."""
    parent = Path(tempfile.mkdtemp(prefix="ooda-newcomer-"))
    clone = parent / "ooda"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
    env = newcomer_env({key: free_port() for key in PORT_KEYS})
    try:
        yield clone, env
    finally:
        pg_root = clone / ".local" / "pg"
        with contextlib.suppress(Exception):
            subprocess.run(["make", "down"], cwd=clone, env=env, capture_output=True, timeout=180)
        if pg_root.is_symlink() and pg_root.resolve().name.startswith("ooda-pg-"):
            shutil.rmtree(pg_root.resolve(), ignore_errors=True)
        shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.timeout(1200)
def test_a_lonely_clone_runs_the_demo_and_make_down_leaves_nothing_behind(lonely_clone):
    clone, env = lonely_clone
    assert sorted(p.name for p in clone.parent.iterdir()) == ["ooda"]
    assert not any((p / "shared").exists() for p in clone.parents)

    out = run(["make", "demo", f"MINUTES={DEMO_MINUTES}"], clone, env, timeout=1000)

    # The report's path is printed, and the report is inside the clone.
    (printed,) = re.findall(r"==> Report: (\S+)", re.sub(r"\x1b\[[0-9;]*m", "", out))
    report = Path(printed)
    assert report.parent == clone / "reports", printed
    for name in ("plot.png", "summary.md", "summary.json", "steps.json"):
        assert (report / name).is_file(), f"{name} missing from {report}"
        assert str(report / name) in out
    assert (report / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"{DEMO_MINUTES:g} trace minutes" in (report / "summary.md").read_text()

    # What `make down` has to stop: the broker, the cluster, the services, any workload.
    roots = [str(clone), str((clone / ".local" / "pg").resolve())]
    running = platform_processes_of(roots)
    commands = " ".join(running.values())
    assert "kafka.Kafka" in commands and "postgres" in commands, running
    for name in SERVICES:
        assert f"ooda-{name}" in commands, f"{name} is not running: {running}"
    ports = {int(env[key]) for key in PORT_KEYS}
    assert ports <= listening_ports(), "the platform's ports were not all listening before down"

    run(["make", "down"], clone, env, timeout=180)

    assert platform_processes_of(roots) == {}, "processes of the platform outlived make down"
    assert ports & listening_ports() == set(), "ports of the platform still listen after make down"
