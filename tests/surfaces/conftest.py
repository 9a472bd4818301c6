"""Five services as real processes on real Kafka and PostgreSQL, wired to each other (not to the
`make up` platform), with a topology registered: what a new user has after `make up`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ooda.auth import issue_token
from ooda.scenario import Platform as ScenarioPlatform
from ooda.scenario import build_workload, register_topology
from ooda.testing import (
    SERVICES,
    Infra,
    ServiceProcess,
    create_topics,
    delete_topics,
    kafka_env,
    platform_processes,
    unique,
)


@dataclass
class Surface:
    """The running services, their topic prefix, and the environment the CLI needs for them."""

    infra: Infra
    prefix: str
    services: dict[str, ServiceProcess]
    data_dir: Path
    workload: Path

    def url(self, service: str) -> str:
        return self.services[service].url

    def token(self, subject: str, *scopes: str) -> str:
        """A token for every service, as an admin issues it with `ooda-token`."""
        return issue_token(self.infra.auth_secret, subject, list(scopes), audience=SERVICES)

    @property
    def cli_env(self) -> dict[str, str]:
        """What a user exports to point `ooda` (and the example subscriber) at this platform."""
        env = {f"OODA_{name.upper()}_URL": self.url(name) for name in SERVICES}
        return env | {
            **kafka_env(self.infra.kafka()),
            "OODA_TOPIC_PREFIX": self.prefix,
            "OODA_TOKEN": self.token("ops", "admin"),
            "COLUMNS": "200",
        }


def _stop_instances(data_dir: Path) -> None:
    """Instances outlive the pipeline by design; stop the ones this session started."""
    for meta in (data_dir / "instances").glob("*/instance.json"):
        with contextlib.suppress(Exception):
            pid = int(json.loads(meta.read_text())["pid"])
            os.killpg(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
async def surface(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Surface]:
    prefix = unique("surf").replace("-", "") + "."
    await create_topics(infra, prefix)
    root = tmp_path_factory.mktemp("surface")
    data_dir = root / "pipeline"
    services = await platform_processes(infra, prefix, root, data_dir)
    for proc in services.values():
        proc.start()
    try:
        for proc in services.values():
            await proc.wait_ready()
        scenario = ScenarioPlatform(
            infra.auth_secret, **{name: services[name].url for name in SERVICES}
        )
        async with httpx.AsyncClient(timeout=30.0) as client:
            await register_topology(client, scenario, ("zone-a", "zone-b"), hosts_per_zone=2)
        workload = build_workload(root / "workload.pyz")
        yield Surface(infra, prefix, services, data_dir, workload)
    finally:
        for proc in services.values():
            proc.stop()
        _stop_instances(data_dir)
        await delete_topics(infra, prefix)
