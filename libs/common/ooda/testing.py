"""Real Kafka and PostgreSQL for tests, found in this order:

1. environment variables (`OODA_KAFKA_BOOTSTRAP`, `OODA_PG_ADMIN_URL`, ...), as CI or a user sets;
2. testcontainers, where a Docker engine answers;
3. the local processes of `deploy/local/ooda-local infra-up` (started if needed).

With CI=true, missing infrastructure fails the run; elsewhere the tests that need it are skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
LOCAL_ENV = Path(os.environ.get("OODA_LOCAL_DIR", REPO / ".local")) / "ooda.env"
SERVICES = ("cmdb", "pipeline", "monitor", "elastic", "decision")


@dataclass
class Infra:
    """Where the real broker and databases are, and the secret tokens are signed with."""

    kafka_bootstrap: str
    database_urls: dict[str, str]
    auth_secret: str
    origin: str
    _cleanup: list[contextlib.AbstractContextManager[object]] = field(default_factory=list)

    def database_url(self, name: str) -> str:
        """The SQLAlchemy URL of database `name` (a service name or `ooda_test`)."""
        return self.database_urls[name]


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines of an env file."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return values


def _from_mapping(env: dict[str, str], origin: str) -> Infra | None:
    bootstrap = env.get("OODA_KAFKA_BOOTSTRAP")
    urls = {
        name: env[f"{name.upper()}_DATABASE_URL"]
        for name in (*SERVICES, "ooda_test")
        if f"{name.upper()}_DATABASE_URL" in env
    }
    if not bootstrap or "ooda_test" not in urls:
        return None
    secret = env.get("OODA_AUTH_SECRET") or uuid.uuid4().hex * 2
    return Infra(bootstrap, urls, secret, origin)


def _docker_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _from_testcontainers() -> Infra:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    kafka = KafkaContainer("apache/kafka:4.1.1").with_kraft()
    pg = PostgresContainer("postgres:16", driver="asyncpg")
    kafka.start()
    pg.start()
    url = pg.get_connection_url()
    urls = {name: url for name in (*SERVICES, "ooda_test")}
    infra = Infra(kafka.get_bootstrap_server(), urls, uuid.uuid4().hex * 2, "testcontainers")
    infra._cleanup += [kafka, pg]
    return infra


def _from_local() -> Infra:
    script = REPO / "deploy" / "local" / "ooda-local"
    result = subprocess.run([str(script), "infra-up"], capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(
            f"deploy/local infra-up failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    found = _from_mapping(read_env_file(LOCAL_ENV), "deploy/local")
    if found is None:
        raise RuntimeError(f"{LOCAL_ENV} lacks the expected variables")
    return found


def resolve_infra() -> Infra:
    """Find or start real Kafka and PostgreSQL; raise with the reason when there are none."""
    found = _from_mapping(dict(os.environ), "environment")
    if found:
        return found
    if _docker_answers():
        return _from_testcontainers()
    return _from_local()  # idempotent: starts what is not running, keeps what is


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    """Real Kafka and PostgreSQL for the whole session (fails under CI when unavailable)."""
    try:
        found = resolve_infra()
    except Exception as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"integration infrastructure unavailable under CI: {exc}")
        pytest.skip(f"integration infrastructure unavailable: {exc}")
    yield found
    for resource in found._cleanup:
        with contextlib.suppress(Exception):
            resource.__exit__(None, None, None)


def unique(prefix: str) -> str:
    """A name no other test uses (tests make data unique instead of cleaning up)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
