"""The platform's services as real processes on real Kafka and PostgreSQL, isolated per session."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ooda import scenario
from ooda.auth import issue_token
from ooda.testing import (
    SERVICES,
    Infra,
    ServiceProcess,
    create_topics,
    delete_topics,
    platform_processes,
    unique,
)


@dataclass
class Platform:
    """Five running services, their topic prefix and a way to act as a user."""

    infra: Infra
    prefix: str
    services: dict[str, ServiceProcess]
    logs: Path
    pipeline_data: Path

    def token(self, subject: str, *scopes: str) -> dict[str, str]:
        """Authorization header for `subject` with `scopes`, for every service."""
        token = issue_token(self.infra.auth_secret, subject, list(scopes), audience=SERVICES)
        return {"Authorization": f"Bearer {token}"}

    def url(self, service: str) -> str:
        return self.services[service].url

    def scenario(self) -> scenario.Platform:
        """The same services as `ooda.scenario` addresses a running platform."""
        return scenario.Platform(
            self.infra.auth_secret, **{name: self.url(name) for name in SERVICES}
        )


SCRAPE_INTERVAL_SECONDS = 2.0


def workload_processes(data_dir: Path) -> dict[int, str]:
    """pid -> instance id of every process running in an instance folder under `data_dir`.

    The pipeline's local driver starts each instance with its folder as working directory (and
    `WORKLOAD_INSTANCE` in its environment), in a session of its own, so this finds them even
    when their record was never written.
    """
    root = str((data_dir / "instances").resolve()) + os.sep
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd.startswith(root):
            found[int(entry.name)] = Path(cwd).name
    return found


def kill_workloads(data_dir: Path, timeout_s: float = 10.0) -> dict[int, str]:
    """SIGKILL every workload process the pipeline started under `data_dir`; wait until gone."""
    killed = workload_processes(data_dir)
    for pid in killed:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while workload_processes(data_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    return killed


@contextlib.asynccontextmanager
async def started_platform(
    infra: Infra, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    """The five services as processes on `infra`, ready; stopped (with their instances) after."""
    prefix = unique("it").replace("-", "") + "."
    await create_topics(infra, prefix)
    logs = tmp_path_factory.mktemp("service-logs")
    pipeline_data = tmp_path_factory.mktemp("pipeline-data")
    services = await platform_processes(
        infra, prefix, Path(logs), pipeline_data, SCRAPE_INTERVAL_SECONDS
    )
    for proc in services.values():
        proc.start()
    try:
        for proc in services.values():
            await proc.wait_ready()
        yield Platform(infra, prefix, services, Path(logs), Path(pipeline_data))
    finally:
        for proc in services.values():
            proc.stop()
        # Instances outlive the pipeline by design: no workload may outlive the session.
        kill_workloads(Path(pipeline_data))
        await delete_topics(infra, prefix)
        if survivors := workload_processes(Path(pipeline_data)):
            raise RuntimeError(f"workload processes outlived the session: {survivors}")


@pytest.fixture(scope="session")
async def platform(
    infra: Infra, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    async with started_platform(infra, tmp_path_factory) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0) as client:
        yield client


@pytest.fixture
def app_id() -> Iterator[str]:
    yield unique("app")
