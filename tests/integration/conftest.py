"""The platform's services as real processes on real Kafka and PostgreSQL, isolated per session."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ooda.auth import issue_token
from ooda.testing import (
    SERVICES,
    Infra,
    ServiceProcess,
    create_database,
    create_topics,
    delete_topics,
    free_port,
    unique,
)


@dataclass
class Platform:
    """Five running services, their topic prefix and a way to act as a user."""

    infra: Infra
    prefix: str
    services: dict[str, ServiceProcess]

    def token(self, subject: str, *scopes: str) -> dict[str, str]:
        """Authorization header for `subject` with `scopes`."""
        return {
            "Authorization": f"Bearer {issue_token(self.infra.auth_secret, subject, list(scopes))}"
        }

    def url(self, service: str) -> str:
        return self.services[service].url


@pytest.fixture(scope="session")
async def platform(
    infra: Infra, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    prefix = unique("it").replace("-", "") + "."
    await create_topics(infra, prefix)
    logs = tmp_path_factory.mktemp("service-logs")
    services = {}
    for name in SERVICES:
        port = free_port()
        env = dict(os.environ) | {
            "OODA_KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
            "OODA_AUTH_SECRET": infra.auth_secret,
            "OODA_TOPIC_PREFIX": prefix,
            "OODA_LOG_LEVEL": "INFO",
            f"{name.upper()}_DATABASE_URL": await create_database(infra, name),
            f"{name.upper()}_PORT": str(port),
            f"{name.upper()}_OUTBOX_POLL_SECONDS": "0.2",
        }
        services[name] = ServiceProcess(name, env, port, Path(logs) / f"{name}.log")
    for proc in services.values():
        proc.start()
    try:
        for proc in services.values():
            await proc.wait_ready()
        yield Platform(infra, prefix, services)
    finally:
        for proc in services.values():
            proc.stop()
        await delete_topics(infra, prefix)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0) as client:
        yield client


@pytest.fixture
def app_id() -> Iterator[str]:
    yield unique("app")
