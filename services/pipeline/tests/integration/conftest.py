"""A fake CMDB over real HTTP, workload artifacts, and the pipeline on real Kafka and PostgreSQL.

The fake CMDB is a stdlib HTTP server (a thread on a free port) that answers the reads of
docs/interfaces.md, and the monitor's service discovery, from dicts the test fills. Artifacts
are real zipapps of examples/workload; a "bad" or "errors" build bakes a failure switch into its
`__main__`. Every instance process a test's pipeline started is killed at the end (found
through the driver's records in the data dir).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from ooda.events import Event, decode
from ooda.testing import REPO, Infra, RunningService, running_service, unique
from pipeline.config import Settings
from pipeline.main import MIGRATIONS, create_app

WORKLOAD = REPO / "examples" / "workload"


@dataclass
class FakeCmdb:
    """Applications, specs and hosts, served at the CMDB's read paths."""

    apps: dict[str, dict[str, Any]] = field(default_factory=dict)
    specs: dict[str, dict[str, Any]] = field(default_factory=dict)
    hosts: list[dict[str, Any]] = field(default_factory=list)
    targets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # app -> SD groups
    url: str = ""

    def add_app(self, app: str, owner: str = "shop-team", replicas: int = 3) -> None:
        self.apps[app] = {"id": app, "kind": "application", "owner_team": owner, "tier": "web"}
        self.specs[app] = {
            "revision": 1,
            "artifact": None,
            "version": None,
            "replicas": {"min": 1, "max": 20, "desired": replicas},
            "resources": {"cpu_millis": 100, "memory_mib": 64},
            "health_check": {"path": "/readyz", "timeout_seconds": 4},
        }

    def add_hosts(self, zones: tuple[str, ...] = ("z1", "z2", "z3"), per_zone: int = 2) -> None:
        for zone in zones:
            for n in range(per_zone):
                self.hosts.append(
                    {
                        "id": f"host-{zone}-{n}",
                        "zone_id": zone,
                        "pool_id": "general",
                        "address": "127.0.0.1",
                        "cpu_millis": 4000,
                        "memory_mib": 8192,
                        "status": "up",
                        "allocated": {"cpu_millis": 0, "memory_mib": 0},
                    }
                )

    def answer(self, path: str) -> tuple[int, Any]:
        parts = path.split("?", 1)[0].strip("/").split("/")
        if parts == ["v1", "hosts"]:
            return 200, {"items": self.hosts, "next": None}
        if parts == ["v1", "sd", "prometheus"]:
            return 200, [group for groups in self.targets.values() for group in groups]
        if len(parts) == 3 and parts[:2] == ["v1", "apps"] and parts[2] in self.apps:
            return 200, self.apps[parts[2]]
        if len(parts) == 4 and parts[3] == "spec" and parts[2] in self.specs:
            return 200, self.specs[parts[2]]
        return 404, {"detail": f"no {path}"}


@pytest.fixture(scope="session")
def cmdb() -> Iterator[FakeCmdb]:
    fake = FakeCmdb()
    fake.add_hosts()
    with serving(fake):
        yield fake


@contextlib.contextmanager
def serving(fake: FakeCmdb) -> Iterator[FakeCmdb]:
    """The fake CMDB answering over HTTP on a free port (its `url`) while the block runs."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def do_GET(self) -> None:
            code, body = fake.answer(self.path)
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def build_artifact(out: Path, **baked_env: str) -> bytes:
    """A zipapp of the sample workload, with environment defaults baked into its entry point."""
    source = out.parent / f"{out.stem}-src"
    shutil.copytree(WORKLOAD, source, ignore=shutil.ignore_patterns("__pycache__"))
    if baked_env:
        main = source / "__main__.py"
        lines = "".join(f"os.environ.setdefault({k!r}, {v!r})\n" for k, v in baked_env.items())
        main.write_text("import os\n" + lines + main.read_text())
    subprocess.run([sys.executable, "-m", "zipapp", str(source), "-o", str(out)], check=True)
    return out.read_bytes()


@dataclass(frozen=True)
class Artifacts:
    good: bytes
    bad: bytes
    slow: bytes
    errors: bytes  # ready, but answers every second /work request with 500


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    folder = tmp_path_factory.mktemp("artifacts")
    return Artifacts(
        good=build_artifact(folder / "good.pyz", WORKLOAD_WARMUP_SECONDS="0.1"),
        bad=build_artifact(folder / "bad.pyz", WORKLOAD_FAIL="unhealthy"),
        slow=build_artifact(folder / "slow.pyz", WORKLOAD_WARMUP_SECONDS="1.0"),
        errors=build_artifact(
            folder / "errors.pyz", WORKLOAD_FAIL="errors", WORKLOAD_WARMUP_SECONDS="0.1"
        ),
    )


def kill_instances(data_dir: Path) -> None:
    """Kill every instance process the pipeline recorded under `data_dir`."""
    for record in (data_dir / "instances").glob("*/instance.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            pid = int(json.loads(record.read_text())["pid"])
            if instance_runs(pid, record.parent.name):
                os.killpg(pid, signal.SIGKILL)


def instance_runs(pid: int, instance_id: str) -> bool:
    """Whether `pid` is alive and runs instance `instance_id`."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"WORKLOAD_INSTANCE={instance_id}".encode() in environ


def running_instance_ids(data_dir: Path) -> set[str]:
    """Ids of the instances whose processes run now, from the driver's records."""
    found = set()
    for record in (data_dir / "instances").glob("*/instance.json"):
        pid = int(json.loads(record.read_text())["pid"])
        if instance_runs(pid, record.parent.name):
            found.add(record.parent.name)
    return found


def pipeline_settings(cmdb: FakeCmdb, data_dir: Path) -> dict[str, Any]:
    return {
        "cmdb_url": cmdb.url,
        "data_dir": data_dir,
        "executor_poll_seconds": 0.1,
        "health_timeout_seconds": 4.0,
        "stop_timeout_seconds": 3.0,
        "liveness_grace_seconds": 1.0,
    }


@asynccontextmanager
async def pipeline(
    infra: Infra, cmdb: FakeCmdb, data_dir: Path, **overrides: Any
) -> AsyncIterator[RunningService]:
    """The pipeline in-process on fresh database and topics; its instances killed after."""
    try:
        async with running_service(
            infra,
            "pipeline",
            Settings,
            create_app,
            MIGRATIONS,
            **(pipeline_settings(cmdb, data_dir) | overrides),
        ) as svc:
            yield svc
    finally:
        kill_instances(data_dir)


async def upload(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    data: bytes,
    name: str,
    team: str | None = None,
) -> str:
    """Upload an artifact (for `team`, else the token's only team); its sha256."""
    params = {"name": name} | ({"team": team} if team else {})
    response = await client.post("/v1/artifacts", params=params, content=data, headers=headers)
    assert response.status_code in (200, 201), response.text
    return str(response.json()["sha256"])


async def request_deploy(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    app: str,
    version: str,
    artifact: str,
    batch: dict[str, Any],
    replicas: int | None = None,
) -> str:
    """Ask for a deploy (a fresh idempotency key); the id of the accepted change."""
    target: dict[str, Any] = {"version": version, "artifact": artifact}
    if replicas is not None:
        target["replicas"] = replicas
    created = await client.post(
        "/v1/changes",
        headers=headers,
        json={
            "app": app,
            "kind": "deploy",
            "idempotency_key": unique("rel"),
            "target": target,
            "batch": batch,
        },
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def wait_for_change(
    client: httpx.AsyncClient,
    change_id: str,
    done: Callable[[dict[str, Any]], bool],
    timeout: float = 40,
) -> dict[str, Any]:
    """Poll the change until `done` holds; fail with its last state."""
    last: dict[str, Any] = {}
    try:
        async with asyncio.timeout(timeout):
            while True:
                response = await client.get(f"/v1/changes/{change_id}")
                if response.status_code == 200:
                    last = response.json()
                    if done(last):
                        return last
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"change {change_id} stuck: {json.dumps(last)[:2000]}") from None


def finished(change: dict[str, Any]) -> bool:
    return change["state"] in ("succeeded", "failed", "rolled_back", "aborted")


async def read_events(
    infra: Infra,
    topic: str,
    done: Callable[[list[Event]], bool],
    timeout: float = 20,
    settle: float = 0.0,
) -> list[Event]:
    """Events of `topic` from the beginning until `done` holds (then `settle` seconds more)."""
    consumer = AIOKafkaConsumer(
        topic,
        **infra.kafka().options(),
        auto_offset_reset="earliest",
        group_id=unique("reader"),
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[Event] = []
    try:
        async with asyncio.timeout(timeout + settle):
            while not done(found):
                batch = await consumer.getmany(timeout_ms=300)
                for records in batch.values():
                    found.extend(decode(r.key, r.headers, r.value) for r in records)
            loop = asyncio.get_running_loop()
            end = loop.time() + settle
            while loop.time() < end:
                batch = await consumer.getmany(timeout_ms=300)
                for records in batch.values():
                    found.extend(decode(r.key, r.headers, r.value) for r in records)
    finally:
        await consumer.stop()
    return found


@dataclass
class Kit:
    """What the pipeline's integration tests use, handed out as one fixture."""

    infra: Infra
    cmdb: FakeCmdb
    artifacts: Artifacts
    pipeline: Callable[..., Any] = pipeline
    upload: Callable[..., Any] = upload
    request_deploy: Callable[..., Any] = request_deploy
    wait_for_change: Callable[..., Any] = wait_for_change
    finished: Callable[[dict[str, Any]], bool] = finished
    read_events: Callable[..., Any] = read_events
    running_instance_ids: Callable[[Path], set[str]] = running_instance_ids
    kill_instances: Callable[[Path], None] = kill_instances
    settings: Callable[..., dict[str, Any]] = pipeline_settings


@pytest.fixture
def kit(infra: Infra, cmdb: FakeCmdb, artifacts: Artifacts) -> Kit:
    return Kit(infra, cmdb, artifacts)


# --- SSH hosts: real sshd processes on localhost ports, one per "host" and zone --------------

SSHD = Path("/usr/sbin/sshd")


@dataclass
class SshdHost:
    """One sshd on its own loopback address and a free port; the driver's folder on it is `root`
    (the hosts share this machine's filesystem, so each has a folder of its own)."""

    id: str
    zone: str
    address: str
    port: int
    root: Path
    host_key_line: str  # `<type> <base64>` of its host key
    process: subprocess.Popen[bytes] | None = None

    def cmdb_item(self) -> dict[str, Any]:
        """The host as the CMDB lists it, with the SSH attributes the driver reads."""
        return {
            "id": self.id,
            "zone_id": self.zone,
            "pool_id": "general",
            "address": self.address,
            "cpu_millis": 4000,
            "memory_mib": 8192,
            "status": "up",
            "allocated": {"cpu_millis": 0, "memory_mib": 0},
            "attributes": {
                "ssh_port": self.port,
                "ssh_user": getpass.getuser(),
                "ssh_remote_dir": str(self.root),
            },
        }

    def records(self) -> dict[str, dict[str, Any]]:
        """The supervisor's instance records on this host, by instance id."""
        found = {}
        for record in (self.root / "instances").glob("*/instance.json"):
            with contextlib.suppress(OSError, ValueError):
                found[record.parent.name] = json.loads(record.read_text())
        return found

    def running(self) -> set[str]:
        """Ids of the instances whose workload runs now on this host."""
        return {
            instance_id
            for instance_id, record in self.records().items()
            if instance_runs(int(record.get("pid", 0)), instance_id)
        }


@dataclass
class SshFleet:
    """Three sshd hosts, the client key they authorise and a known_hosts file listing them."""

    hosts: list[SshdHost]
    client_key: Path
    known_hosts: Path

    def known_hosts_without(self, folder: Path, host_id: str) -> Path:
        """A known_hosts file that lists every host but `host_id`."""
        path = folder / f"known_hosts-without-{host_id}"
        path.write_text(
            "".join(
                f"[{h.address}]:{h.port} {h.host_key_line}\n" for h in self.hosts if h.id != host_id
            )
        )
        return path

    def kill_instances(self) -> None:
        """Kill every workload the supervisors started on the fleet's hosts."""
        for host in self.hosts:
            for instance_id, record in host.records().items():
                with contextlib.suppress(OSError, KeyError, ValueError):
                    if instance_runs(int(record["pid"]), instance_id):
                        os.killpg(int(record["pid"]), signal.SIGKILL)


def _free_tcp_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def _start_sshd(config: Path, address: str, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [str(SSHD), "-D", "-e", "-f", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=(config.parent / "sshd.log").open("ab"),
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (config.parent / "sshd.log").read_text()
            raise RuntimeError(f"sshd on port {port} exited: {log[-1000:]}")
        with socket.socket() as sock:
            if sock.connect_ex((address, port)) == 0:
                return process
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"sshd on port {port} did not listen within 10 s")


@pytest.fixture(scope="module")
def ssh_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshFleet]:
    """Three real sshd processes (Debian openssh-server), each a host in its own zone, with a
    host key and an authorised client key generated for this run."""
    import asyncssh

    if not SSHD.exists():
        raise RuntimeError(f"{SSHD} is missing: install openssh-server (tools/bootstrap.sh)")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    folder = tmp_path_factory.mktemp("ssh")
    client = asyncssh.generate_private_key("ssh-ed25519")
    client_key = folder / "id_ed25519"
    client_key.write_bytes(client.export_private_key())
    client_key.chmod(0o600)
    authorized = folder / "authorized_keys"
    authorized.write_bytes(client.export_public_key())
    hosts: list[SshdHost] = []
    try:
        for n, zone in enumerate(("z1", "z2", "z3")):
            home = folder / f"host{n}"
            home.mkdir()
            host_key = asyncssh.generate_private_key("ssh-ed25519")
            (home / "host_key").write_bytes(host_key.export_private_key())
            (home / "host_key").chmod(0o600)
            address = f"127.0.0.{11 + n}"  # its own address: endpoints must name their host's
            port = _free_tcp_port(address)
            config = home / "sshd_config"
            config.write_text(
                f"Port {port}\n"
                f"ListenAddress {address}\n"
                f"HostKey {home / 'host_key'}\n"
                f"PidFile {home / 'sshd.pid'}\n"
                f"AuthorizedKeysFile {authorized}\n"
                "PubkeyAuthentication yes\n"
                "PasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\n"
                "PermitRootLogin prohibit-password\n"
                "StrictModes no\n"  # the keys live in a temp folder, not in ~/.ssh
                "UsePAM no\n"
                "MaxSessions 32\n"
                "Subsystem sftp internal-sftp\n"
                "LogLevel ERROR\n"
            )
            host = SshdHost(
                id=f"ssh-{zone}",
                zone=zone,
                address=address,
                port=port,
                root=home / "ooda",
                host_key_line=" ".join(host_key.export_public_key().decode().split()[:2]),
            )
            host.process = _start_sshd(config, address, port)
            hosts.append(host)
        known_hosts = folder / "known_hosts"
        known_hosts.write_text(
            "".join(f"[{h.address}]:{h.port} {h.host_key_line}\n" for h in hosts)
        )
        yield SshFleet(hosts, client_key, known_hosts)
    finally:
        SshFleet(hosts, client_key, folder / "none").kill_instances()
        for host in hosts:
            if host.process is not None:
                host.process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    host.process.wait(5)


@pytest.fixture(scope="module")
def ssh_cmdb(ssh_fleet: SshFleet) -> Iterator[FakeCmdb]:
    """A fake CMDB whose hosts are the fleet's sshd hosts (address and SSH attributes)."""
    fake = FakeCmdb(hosts=[host.cmdb_item() for host in ssh_fleet.hosts])
    with serving(fake):
        yield fake
