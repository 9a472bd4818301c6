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
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ooda.bus import KafkaConnection, read_acls, read_env_file
from ooda.db import Messaging
from ooda.events import Event, Payload, spec_for_payload
from ooda.outbox import Outbox

REPO = Path(__file__).resolve().parents[3]
LOCAL_ENV = Path(os.environ.get("OODA_LOCAL_DIR", REPO / ".local")) / "ooda.env"
SERVICES = ("cmdb", "pipeline", "monitor", "elastic", "decision")
TOKEN_SERVICES = ("cmdb", "pipeline", "monitor", "elastic")
"""The services with token-protected routes: only they are given the token secret."""
ACL_FILE = REPO / "deploy" / "local" / "acls.txt"


@dataclass
class Infra:
    """Where the real broker and databases are, the secret tokens are signed with, and the Kafka
    principals: the admin's (`kafka()`) and each service's (`kafka("cmdb")`) where the broker
    authenticates clients."""

    kafka_bootstrap: str
    database_urls: dict[str, str]
    auth_secret: str
    origin: str
    admin_url: str | None = None
    _cleanup: list[contextlib.AbstractContextManager[object]] = field(default_factory=list)
    kafka_admin: KafkaConnection | None = None
    kafka_services: dict[str, KafkaConnection] = field(default_factory=dict)

    def database_url(self, name: str) -> str:
        """The SQLAlchemy URL of database `name` (a service name or `ooda_test`)."""
        return self.database_urls[name]

    def kafka(self, principal: str | None = None) -> KafkaConnection:
        """The admin's Kafka connection, or a service's (the admin's on a broker without SASL)."""
        admin = self.kafka_admin or KafkaConnection(self.kafka_bootstrap)
        if principal is None or not admin.sasl:
            return admin
        return self.kafka_services[principal]


def kafka_env(conn: KafkaConnection) -> dict[str, str]:
    """The `OODA_KAFKA_*` variables that make a process connect as `conn` does."""
    env = {
        "OODA_KAFKA_BOOTSTRAP": conn.bootstrap,
        "OODA_KAFKA_SECURITY_PROTOCOL": conn.security_protocol,
        "OODA_KAFKA_SASL_MECHANISM": conn.sasl_mechanism,
    }
    if conn.username and conn.password:
        env["OODA_KAFKA_USERNAME"] = conn.username
        env["OODA_KAFKA_PASSWORD"] = conn.password.get_secret_value()
    if conn.ssl_cafile:
        env["OODA_KAFKA_SSL_CAFILE"] = conn.ssl_cafile
    return env


def kafka_settings(conn: KafkaConnection) -> dict[str, Any]:
    """The settings fields (`ServiceSettings`) that make a service connect as `conn` does."""
    return {
        "kafka_bootstrap": conn.bootstrap,
        "kafka_security_protocol": conn.security_protocol,
        "kafka_sasl_mechanism": conn.sasl_mechanism,
        "kafka_username": conn.username,
        "kafka_password": conn.password,
        "kafka_ssl_cafile": conn.ssl_cafile,
    }


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
    admin = KafkaConnection.from_env(env)
    services = {
        name: KafkaConnection.from_env(env, prefix=f"{name.upper()}_KAFKA_")
        for name in SERVICES
        if env.get(f"{name.upper()}_KAFKA_PASSWORD")
    }
    return Infra(
        bootstrap,
        urls,
        secret,
        origin,
        env.get("OODA_PG_ADMIN_URL"),
        kafka_admin=admin,
        kafka_services=services,
    )


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
    infra = Infra(kafka.get_bootstrap_server(), urls, uuid.uuid4().hex * 2, "testcontainers", url)
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


async def create_database(infra: Infra, service: str) -> str:
    """A new, empty database owned by the service's role; returns its SQLAlchemy URL."""
    import asyncpg
    from sqlalchemy.engine import make_url

    base = make_url(infra.database_url(service))
    name = f"{service}_{uuid.uuid4().hex[:10]}"
    admin_url = infra.admin_url or infra.database_url(service)
    conn = await asyncpg.connect(admin_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}" OWNER "{base.username}"')
    finally:
        await conn.close()
    return base.set(database=name).render_as_string(hide_password=False)


async def drop_database(infra: Infra, url: str) -> None:
    """Drop a database `create_database` made (its open connections are closed first)."""
    import asyncpg
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    # Connected to another database than the one dropped (`postgres`, which always exists).
    admin = make_url(infra.admin_url or url).set(database="postgres")
    dsn = admin.render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def create_topics(infra: Infra, prefix: str, partitions: int = 3) -> None:
    """Every catalog topic and its dead-letter topic, under `prefix`, with the ACLs of
    deploy/local/acls.txt for them (and the services' groups under `prefix`) where the broker
    authorises clients."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from ooda.bus import BusAdmin
    from ooda.events.contracts import topics

    admin = AIOKafkaAdminClient(**infra.kafka().options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(prefix + t, partitions, 1) for t in topics()])
    finally:
        await admin.close()
    if infra.kafka().sasl:
        async with BusAdmin(infra.kafka()) as bus:
            await bus.create_acls(acl.prefixed(prefix) for acl in read_acls(ACL_FILE))


async def delete_topics(infra: Infra, prefix: str) -> None:
    """Delete the topics `create_topics` made under `prefix`, and their ACLs (tests tidy the
    shared broker)."""
    from aiokafka.admin import AIOKafkaAdminClient

    from ooda.bus import BusAdmin
    from ooda.events.contracts import topics

    admin = AIOKafkaAdminClient(**infra.kafka().options())
    await admin.start()
    try:
        await admin.delete_topics([prefix + t for t in topics()])
    finally:
        await admin.close()
    if infra.kafka().sasl:
        async with BusAdmin(infra.kafka()) as bus:
            await bus.delete_acls(acl.prefixed(prefix) for acl in read_acls(ACL_FILE))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServiceProcess:
    """One service running as a real process (`ooda-<name>`), as `make up` runs it."""

    name: str
    env: dict[str, str]
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the service's HTTP API."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the process (migrations run first, as in production)."""
        exe = Path(sys.executable).parent / f"ooda-{self.name}"
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(exe)], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Wait until `/readyz` answers 200; fail with the log tail otherwise."""
        import asyncio

        import httpx

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            while loop.time() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    break
                try:
                    if (await client.get(self.url + "/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        tail = self.log_path.read_text(errors="replace")[-3000:]
        raise AssertionError(f"{self.name} not ready after {timeout_s}s; log tail:\n{tail}")

    def kill(self) -> None:
        """SIGKILL: the crash that must lose nothing and repeat nothing."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()


class ProducerOutbox(Outbox):
    """The outbox of a service under test: its own events carry its own `ce_source`; an event of
    a type another service publishes (a test injecting it through this service's relay) carries
    that service's, as consumers check."""

    def __init__(self, messaging: Messaging, service: str, topic_prefix: str) -> None:
        super().__init__(messaging, source=f"/ooda/{service}", topic_prefix=topic_prefix)
        self.own = f"/ooda/{service}"

    def add(self, session: Any, payload: Payload, *, event_id: str | None = None) -> Event:
        sources = spec_for_payload(payload).sources
        self.source = self.own if self.own in sources else sources[0]
        return super().add(session, payload, event_id=event_id)


@dataclass
class RunningService:
    """A service app running in this process (lifespan started), with an HTTP client for it."""

    app: Any
    client: Any
    settings: Any
    prefix: str

    def auth(self, subject: str, *scopes: str) -> dict[str, str]:
        """Authorization header for `subject` with `scopes`, for this service."""
        from ooda.auth import issue_token

        secret = self.settings.token_secret()
        token = issue_token(secret, subject, list(scopes), audience=self.settings.service_name)
        return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def running_service(
    infra: Infra,
    service: str,
    settings_cls: type[Any],
    create_app: Callable[[Any], Any],
    migrations_dir: Path,
    **overrides: Any,
) -> AsyncIterator[RunningService]:
    """Start a service in-process on a fresh database and fresh topics; stop and tidy after.

    The lifespan runs for real (outbox relay, consumers), so service integration tests exercise
    the same code as production; `overrides` set any other settings field. The service connects
    to Kafka as the admin principal, and `runtime.outbox` writes other services' event types in
    their name (`ProducerOutbox`): tests inject the events other services publish through its
    relay. The services' own principals and ACLs are exercised by the process-level tests
    (`platform_processes`) and the bus tests.
    """
    import asyncio

    import httpx
    from asgi_lifespan import LifespanManager
    from pydantic import SecretStr

    from ooda.migrations import wait_and_upgrade

    prefix = unique("svc").replace("-", "") + "."
    await create_topics(infra, prefix)
    url = await create_database(infra, service)
    await wait_and_upgrade(migrations_dir, url)
    settings = settings_cls(
        database_url=url,
        **kafka_settings(infra.kafka()),
        auth_secret=SecretStr(infra.auth_secret),
        topic_prefix=prefix,
        outbox_poll_seconds=0.2,
        **overrides,
    )
    app = create_app(settings)
    try:
        async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
                rt = app.state.runtime
                async with asyncio.timeout(30):
                    await rt.kafka_started.wait()
                rt.outbox = ProducerOutbox(rt.messaging, settings.service_name, prefix)
                yield RunningService(app, client, settings, prefix)
    finally:
        await delete_topics(infra, prefix)


async def platform_processes(
    infra: Infra,
    prefix: str,
    logs: Path,
    pipeline_data: Path,
    scrape_interval_s: float = 2.0,
) -> dict[str, ServiceProcess]:
    """The five services as processes (not started) on fresh databases and topics under `prefix`,
    each pointed at this platform's CMDB, with the pipeline's instances kept in `pipeline_data`."""
    ports = {name: free_port() for name in SERVICES}
    cmdb_url = f"http://127.0.0.1:{ports['cmdb']}"
    services = {}
    for name in SERVICES:
        # Each service gets its own variables only, as `ooda-local up` starts it: its database,
        # its Kafka principal, the token secret if it verifies tokens.
        env = {k: v for k, v in os.environ.items() if not _secret_variable(k)} | {
            **kafka_env(infra.kafka(name)),
            **({"OODA_AUTH_SECRET": infra.auth_secret} if name in TOKEN_SERVICES else {}),
            "OODA_TOPIC_PREFIX": prefix,
            "OODA_LOG_LEVEL": "INFO",
            f"{name.upper()}_DATABASE_URL": await create_database(infra, name),
            f"{name.upper()}_PORT": str(ports[name]),
            f"{name.upper()}_OUTBOX_POLL_SECONDS": "0.2",
            f"{name.upper()}_CMDB_URL": cmdb_url,
            "PIPELINE_DATA_DIR": str(pipeline_data),
            "MONITOR_SCRAPE_INTERVAL_SECONDS": str(scrape_interval_s),
        }
        services[name] = ServiceProcess(name, env, ports[name], logs / f"{name}.log")
    return services


def _secret_variable(name: str) -> bool:
    """Credentials a service must not inherit from the test's environment (others' included)."""
    return name.endswith(("_DATABASE_URL", "_KAFKA_USERNAME", "_KAFKA_PASSWORD")) or name in (
        "OODA_AUTH_SECRET",
        "OODA_PG_ADMIN_URL",
    )


def _ooda_local(env: dict[str, str], *args: str, timeout_s: float = 300.0) -> str:
    """Run `deploy/local/ooda-local` with `env` over this process's environment."""
    script = REPO / "deploy" / "local" / "ooda-local"
    result = subprocess.run(
        [str(script), *args],
        env=dict(os.environ) | env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"ooda-local {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result.stdout


@dataclass
class PrivateInfra:
    """A Kafka broker and a PostgreSQL cluster of one test's own (deploy/local in its own folder,
    on its own ports), so the test may restart them without disturbing any other test."""

    infra: Infra
    env: dict[str, str]

    def restart(self, component: str) -> None:
        """Stop `kafka` or `postgresql` and start it again; returns once it serves."""
        _ooda_local(self.env, "restart", component, timeout_s=120.0)


@contextlib.contextmanager
def private_local_infra(workdir: Path) -> Iterator[PrivateInfra]:
    """Start a private broker and cluster under `workdir`; stop them and remove their data after.

    The Kafka jars are shared with the main `.local` folder when it has them (no second download).
    """
    local_dir = workdir / "local"
    libs = LOCAL_ENV.parent / "kafka" / "libs"
    if libs.is_dir():
        (local_dir / "kafka").mkdir(parents=True, exist_ok=True)
        (local_dir / "kafka" / "libs").symlink_to(libs)
    env = {
        "OODA_LOCAL_DIR": str(local_dir),
        "OODA_KAFKA_PORT": str(free_port()),
        "OODA_KAFKA_CONTROLLER_PORT": str(free_port()),
        "OODA_PG_PORT": str(free_port()),
    }
    try:
        _ooda_local(env, "infra-up", timeout_s=600.0)
        found = _from_mapping(read_env_file(local_dir / "ooda.env"), "private deploy/local")
        if found is None:
            raise RuntimeError(f"{local_dir / 'ooda.env'} lacks the expected variables")
        yield PrivateInfra(found, env)
    finally:
        pg_root = local_dir / "pg"
        with contextlib.suppress(Exception):
            _ooda_local(env, "down", timeout_s=120.0)
        if pg_root.is_symlink():  # the cluster was kept outside an unreachable folder
            target = pg_root.resolve()
            if target.name.startswith("ooda-pg-"):
                shutil.rmtree(target, ignore_errors=True)
