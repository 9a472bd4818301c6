"""The `ssh` runtime driver: instances on remote hosts, reached over SSH (asyncssh).

Where: an instance's host id (from the CMDB's placement) names a CMDB host; the driver reaches
it at the host's `address`, port `attributes.ssh_port` (22) as user `attributes.ssh_user` (the
settings' user), and the instance answers at `http://<address>:<port>`. Host keys are checked
against the known_hosts file of the settings (an unknown or changed key refuses the host); the
private key is read from the path in the settings.

What runs on the host (under `<remote_dir>` in the SSH user's home): the supervisor this driver
installs (`bin/supervise-<digest>.py`, `pipeline.ssh_supervisor`), the artifacts it uploaded
(`artifacts/<sha256>.pyz`, uploaded once per host, verified there before use) and one folder per
instance (`instances/<id>/`: record, exit status, log). Each instance runs in its own session
under a monitor that records how it ended, with a clean environment: nothing of the SSH session
or of the pipeline's own environment reaches it.

The executor calls drivers from threads; this driver keeps one event loop of its own in a
background thread, holding one SSH connection per host and on it one supervisor session
(`supervise.py <root> serve`, requests and answers as JSON lines, answered side by side), and
every call blocks on a coroutine there. A lost session or connection is opened again, and the
request sent once more (every request is idempotent). `alive` reads a per-host snapshot of the
running instances at most `status_max_age_s` old, so checking every instance costs one round
trip per host, not per instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import shlex
import threading
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from pipeline.artifacts import sha256_of
from pipeline.driver import DriverError, InstanceSpec, Running
from pipeline.metrics import (
    ARTIFACT_DISTRIBUTION_SECONDS,
    INSTANCES_STARTED,
    INSTANCES_STOPPED,
)

with warnings.catch_warnings():
    # asyncssh still names DSA keys, which recent `cryptography` releases warn about at import.
    warnings.simplefilter("ignore")
    import asyncssh

log = logging.getLogger(__name__)

T = TypeVar("T")

SUPERVISOR = Path(__file__).with_name("ssh_supervisor.py")


class SshDriverError(DriverError):
    """A host that cannot be used: unknown, unreachable, refused, or its supervisor failed."""


class SshHostUnreachable(SshDriverError):
    """A host the driver cannot talk to: unknown, unreachable, its key refused, session lost."""


@dataclass(frozen=True)
class SshHost:
    """Where a host is reached over SSH, and the address its instances answer at."""

    id: str
    address: str
    port: int = 22
    user: str = "root"
    remote_dir: str | None = None  # the driver's folder on the host; the settings' when None

    def __post_init__(self) -> None:
        # An instance's endpoint is `address:port` in the CMDB: no colon, no space in the address.
        if not self.address or any(c in self.address for c in ": \t\n/@"):
            raise SshDriverError(
                f"host {self.id}: address {self.address!r} cannot form a host:port endpoint "
                "(use a DNS name or an IPv4 address)"
            )


HostDirectory = Callable[[], Awaitable[Mapping[str, SshHost]]]


class CmdbHosts:
    """The SSH hosts of the CMDB (`GET /v1/hosts`, every status), cached for `ttl_s`."""

    def __init__(self, base_url: str, user: str, ttl_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.user = user
        self.ttl_s = ttl_s
        self._hosts: dict[str, SshHost] = {}
        self._read_at = float("-inf")

    async def __call__(self) -> Mapping[str, SshHost]:
        if time.monotonic() - self._read_at < self.ttl_s:
            return self._hosts
        try:
            found = await self._read()
        except (httpx.HTTPError, ValueError) as error:
            if not self._hosts:
                raise SshHostUnreachable(f"cannot read the hosts from the CMDB: {error}") from None
            log.warning("cannot read the hosts from the CMDB (%s); using the last read", error)
            self._read_at = time.monotonic() - self.ttl_s + 5  # try again in 5 s
            return self._hosts
        self._hosts, self._read_at = found, time.monotonic()
        return found

    async def _read(self) -> dict[str, SshHost]:
        found: dict[str, SshHost] = {}
        params: dict[str, str] = {}
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5.0) as client:
            while True:
                response = await client.get("/v1/hosts", params=params)
                response.raise_for_status()
                page = response.json()
                items = page.get("items", []) if isinstance(page, dict) else page
                for item in items:
                    try:
                        host = ssh_host_from_json(item, self.user)
                    except SshDriverError as error:
                        log.warning("%s", error)
                        continue
                    found[host.id] = host
                cursor = page.get("next") if isinstance(page, dict) else None
                if not cursor:
                    break
                params = {"cursor": str(cursor)}
        return found

    def forget(self) -> None:
        """Read the CMDB again at the next call (a host the cache does not know was asked for)."""
        self._read_at = float("-inf")


def ssh_host_from_json(item: Mapping[str, Any], default_user: str) -> SshHost:
    """An SshHost from a CMDB host item: `address` and `attributes.ssh_port`, `.ssh_user`,
    `.ssh_remote_dir`."""
    attributes = item.get("attributes") or {}
    try:
        port = int(attributes.get("ssh_port", 22))
    except (TypeError, ValueError):
        raise SshDriverError(
            f"host {item.get('id')}: attributes.ssh_port {attributes.get('ssh_port')!r} "
            "is not a port number"
        ) from None
    return SshHost(
        id=str(item["id"]),
        address=str(item.get("address") or ""),
        port=port,
        user=str(attributes.get("ssh_user") or default_user),
        remote_dir=str(attributes["ssh_remote_dir"]) if attributes.get("ssh_remote_dir") else None,
    )


class _SessionLost(Exception):
    """The supervisor session ended before it answered."""


@dataclass
class _Session:
    process: asyncssh.SSHClientProcess[str]
    pending: dict[int, asyncio.Future[dict[str, Any]]]
    reader: asyncio.Task[None]
    sent: int = 0


@dataclass
class _Snapshot:
    at: float
    running: dict[str, dict[str, Any]]


class SshDriver:
    """Instances on SSH hosts, each under the supervisor the driver installs there."""

    places_artifacts = True  # uploads each artifact to its hosts: no local per-host copy

    def __init__(
        self,
        hosts: HostDirectory,
        *,
        client_key: Path,
        known_hosts: Path,
        remote_dir: str = ".ooda-pipeline",
        python: str = "python3",
        bind: str | None = None,
        stop_timeout_s: float = 10.0,
        connect_timeout_s: float = 10.0,
        status_max_age_s: float = 0.5,
        retry_connect_s: float = 5.0,
    ) -> None:
        self.hosts = hosts
        self.client_key = client_key
        self.known_hosts = known_hosts
        self.remote_dir = remote_dir.rstrip("/")
        self.python = python
        self.bind = bind
        self.stop_timeout_s = stop_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.status_max_age_s = status_max_age_s
        self.retry_connect_s = retry_connect_s
        self.uploads: dict[str, int] = {}  # host id -> artifacts uploaded by this driver
        self._supervisor = SUPERVISOR.read_bytes()
        self._supervisor_name = f"supervise-{hashlib.sha256(self._supervisor).hexdigest()[:16]}.py"
        self._connections: dict[str, asyncssh.SSHClientConnection] = {}
        self._sessions: dict[str, _Session] = {}
        # host id -> (until when, why): a host that failed to connect is not tried again before
        # then, so checking its instances one by one does not wait a connect timeout for each.
        self._unreachable: dict[str, tuple[float, SshHostUnreachable]] = {}
        self._host_locks: dict[str, asyncio.Lock] = {}
        self._installed: set[str] = set()
        self._placed: set[tuple[str, str]] = set()  # (host id, sha256)
        self._digests: dict[Path, tuple[tuple[int, int], str]] = {}
        self._where: dict[str, str] = {}  # instance id -> host id
        self._snapshots: dict[str, _Snapshot] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="ssh-driver", daemon=True
        )
        self._thread.start()

    # --- the Driver protocol (blocking; called from threads) ---------------------------------

    def start(self, spec: InstanceSpec) -> Running:
        return self._call(self._start(spec))

    def stop(self, instance_id: str) -> None:
        self._call(self._stop(instance_id))

    def alive(self, instance_id: str) -> bool:
        return self._call(self._alive(instance_id))

    def running(self) -> list[Running]:
        return self._call(self._running())

    def describe_exit(self, instance_id: str) -> str:
        return self._call(self._describe_exit(instance_id))

    def close(self) -> None:
        """Close the SSH connections and stop the driver's event loop."""
        if not self._loop.is_running():
            return
        with contextlib.suppress(Exception):
            self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    # --- on the driver's loop ----------------------------------------------------------------

    async def _start(self, spec: InstanceSpec) -> Running:
        host = await self._host(spec.host)
        sha = self._digest(spec.artifact)
        await self._install(host)
        await self._place(host, spec.artifact, sha)
        env = {
            **spec.env,
            "WORKLOAD_APP": spec.app,
            "WORKLOAD_VERSION": spec.version,
            "WORKLOAD_INSTANCE": spec.id,
            "WORKLOAD_ZONE": spec.zone,
            "WORKLOAD_HOST": spec.host,
        }
        request = {
            "id": spec.id,
            "app": spec.app,
            "sha256": sha,
            "env": env,
            "python": self.python,
            "bind": self.bind or host.address,
        }
        record = await self._supervise(host, "start", given=request)
        self._where[spec.id] = host.id
        self._snapshots.pop(host.id, None)
        if not record.pop("adopted", False):
            INSTANCES_STARTED.inc()
        return self._as_running(host, record)

    async def _stop(self, instance_id: str) -> None:
        try:
            host = await self._host_of(instance_id)
            if host is None:
                return
            answer = await self._supervise(host, "stop", instance_id, f"{self.stop_timeout_s:g}")
        except SshHostUnreachable as error:
            # Nothing can stop it now: it counts as stopped, so that changes can go on without
            # the host (if the host comes back, a restart of the pipeline stops it as an orphan).
            log.warning("cannot stop instance %s, taken as stopped: %s", instance_id, error)
            return
        self._snapshots.pop(host.id, None)
        if answer.get("stopped"):
            INSTANCES_STOPPED.inc()

    async def _alive(self, instance_id: str) -> bool:
        try:
            host = await self._host_of(instance_id)
            if host is None:
                return False
            snapshot = await self._snapshot(host)
        except SshDriverError as error:
            log.warning("cannot tell whether %s runs: %s", instance_id, error)
            return False
        return instance_id in snapshot.running

    async def _running(self, max_age_s: float = 0) -> list[Running]:
        hosts = list((await self.hosts()).values())
        snapshots = await asyncio.gather(
            *(self._snapshot(host, max_age_s) for host in hosts), return_exceptions=True
        )
        found: list[Running] = []
        for host, snapshot in zip(hosts, snapshots, strict=True):
            if isinstance(snapshot, BaseException):
                # Its instances count as not running; the liveness watch replaces them.
                log.warning("cannot list the instances on host %s: %s", host.id, snapshot)
                continue
            for instance_id, record in sorted(snapshot.running.items()):
                self._where[instance_id] = host.id
                found.append(self._as_running(host, record))
        return found

    async def _describe_exit(self, instance_id: str) -> str:
        try:
            host = await self._host_of(instance_id)
            if host is None:
                return f"instance {instance_id} is not running on any known host"
            answer = await self._supervise(host, "exit", instance_id)
        except SshDriverError as error:
            return f"instance {instance_id}: {error}"
        return f"instance {instance_id} on host {host.id} {answer['how']}; log: {answer['log']}"

    async def _close(self) -> None:
        sessions = list(self._sessions.values())
        self._sessions.clear()
        for session in sessions:
            with contextlib.suppress(Exception):
                session.process.stdin.write_eof()
        for session in sessions:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(session.reader, 5)
        connections = list(self._connections.values())
        self._connections.clear()
        for connection in connections:
            connection.close()
        for connection in connections:
            with contextlib.suppress(Exception):
                await connection.wait_closed()

    # --- helpers -----------------------------------------------------------------------------

    def _as_running(self, host: SshHost, record: Mapping[str, Any]) -> Running:
        return Running(
            id=str(record["id"]),
            app=str(record["app"]),
            host=host.id,
            pid=int(record["pid"]),
            port=int(record["port"]),
            started_at=str(record["started_at"]),
            address=host.address,
        )

    def _root(self, host: SshHost) -> str:
        return (host.remote_dir or self.remote_dir).rstrip("/")

    def _digest(self, path: Path) -> str:
        stat = path.stat()
        key = (stat.st_size, stat.st_mtime_ns)
        known = self._digests.get(path)
        if known is None or known[0] != key:
            known = (key, sha256_of(path))
            self._digests[path] = known
        return known[1]

    async def _host(self, host_id: str) -> SshHost:
        hosts = await self.hosts()
        if host_id not in hosts:
            forget = getattr(self.hosts, "forget", None)
            if forget is not None:
                forget()
                hosts = await self.hosts()
        if host_id not in hosts:
            raise SshHostUnreachable(f"host {host_id} is not known (no SSH address for it)")
        return hosts[host_id]

    async def _host_of(self, instance_id: str) -> SshHost | None:
        """The host the instance was started on (asking every host once if not known)."""
        host_id = self._where.get(instance_id)
        if host_id is not None:
            return await self._host(host_id)
        await self._running(self.status_max_age_s)
        host_id = self._where.get(instance_id)
        return None if host_id is None else await self._host(host_id)

    def _lock(self, key: str) -> asyncio.Lock:
        return self._host_locks.setdefault(key, asyncio.Lock())

    async def _connection(self, host: SshHost) -> asyncssh.SSHClientConnection:
        async with self._lock(f"connect:{host.id}"):
            connection = self._connections.get(host.id)
            if connection is not None and not connection.is_closed():
                return connection
            failed = self._unreachable.get(host.id)
            if failed is not None and time.monotonic() < failed[0]:
                raise SshHostUnreachable(str(failed[1]))
            try:
                connection = await asyncssh.connect(
                    host.address,
                    port=host.port,
                    username=host.user,
                    client_keys=[str(self.client_key)],
                    known_hosts=str(self.known_hosts),
                    agent_path=None,
                    agent_forwarding=False,
                    config=[],
                    connect_timeout=self.connect_timeout_s,
                    keepalive_interval=15,
                )
            except asyncssh.HostKeyNotVerifiable as error:
                failure = SshHostUnreachable(
                    f"host {host.id} ({host.address}:{host.port}) offered a host key that "
                    f"{self.known_hosts} does not list; refusing it ({error.reason})"
                )
            except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as error:
                failure = SshHostUnreachable(
                    f"cannot use the private key {self.client_key} (it must not need a "
                    f"passphrase): {error}"
                )
            except (OSError, asyncssh.Error) as error:
                failure = SshHostUnreachable(
                    f"cannot reach host {host.id} ({host.user}@{host.address}:{host.port}): "
                    f"{error or type(error).__name__}"
                )
            else:
                self._unreachable.pop(host.id, None)
                self._connections[host.id] = connection
                return connection
            self._unreachable[host.id] = (time.monotonic() + self.retry_connect_s, failure)
            raise failure

    async def _session(self, host: SshHost) -> _Session:
        """The host's supervisor session (`supervise.py <root> serve`), started if need be."""
        async with self._lock(f"session:{host.id}"):
            session = self._sessions.get(host.id)
            if session is not None and not session.reader.done():
                return session
            await self._install(host)
            connection = await self._connection(host)
            root = self._root(host)
            words = [self.python, f"{root}/bin/{self._supervisor_name}", root, "serve"]
            try:
                process = await connection.create_process(shlex.join(words), encoding="utf-8")
            except (asyncssh.Error, OSError) as error:
                self._connections.pop(host.id, None)
                raise SshHostUnreachable(
                    f"host {host.id}: cannot start the supervisor: {error}"
                ) from None
            pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
            reader = asyncio.create_task(self._read(host, process, pending))
            session = _Session(process, pending, reader)
            self._sessions[host.id] = session
            return session

    async def _read(
        self,
        host: SshHost,
        process: asyncssh.SSHClientProcess[str],
        pending: dict[int, asyncio.Future[dict[str, Any]]],
    ) -> None:
        """Hand each answer of a session to its request; fail the rest when the session ends."""
        why = "the supervisor session ended"
        try:
            async for line in process.stdout:
                try:
                    message = json.loads(line)
                except ValueError:
                    log.warning("host %s: supervisor said %r", host.id, line[:200])
                    continue
                future = pending.pop(message.get("n"), None)
                if future is not None and not future.done():
                    future.set_result(message)
            with contextlib.suppress(Exception):
                errors = await asyncio.wait_for(process.stderr.read(), 1)
                if errors.strip():
                    why += f": {errors.strip()[-500:]}"
        except (asyncssh.Error, OSError) as error:
            why = f"the supervisor session was lost: {error}"
        finally:
            for future in pending.values():
                if not future.done():
                    future.set_exception(_SessionLost(why))
            pending.clear()

    async def _supervise(
        self, host: SshHost, command: str, *args: str, given: Any = None
    ) -> dict[str, Any]:
        """Ask the host's supervisor; its answer (raise SshDriverError if it cannot answer)."""
        request = {"command": command, "args": list(args), "input": given}
        for attempt in (1, 2):
            session = await self._session(host)
            session.sent += 1
            number = session.sent
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            session.pending[number] = future
            try:
                if session.reader.done():  # ended since: nothing would answer
                    raise _SessionLost("the supervisor session ended")
                session.process.stdin.write(json.dumps({"n": number, **request}) + "\n")
                message = await asyncio.wait_for(future, self.stop_timeout_s + 60)
            except (_SessionLost, asyncssh.Error, OSError) as error:
                # Every request is idempotent (a start adopts what the lost one started).
                session.pending.pop(number, None)
                self._sessions.pop(host.id, None)
                session.process.close()
                if attempt == 2:
                    raise SshHostUnreachable(f"host {host.id}: {command}: {error}") from None
                continue
            except TimeoutError:
                session.pending.pop(number, None)
                raise SshDriverError(f"host {host.id}: {command} got no answer in time") from None
            if not message.get("ok"):
                raise SshDriverError(f"host {host.id}: {command}: {message.get('error')}")
            answer = message.get("answer")
            assert isinstance(answer, dict)
            return answer
        raise AssertionError("unreachable")

    async def _install(self, host: SshHost) -> None:
        """The supervisor on the host (once per host and driver; a new one beside old ones)."""
        if host.id in self._installed:
            return
        async with self._lock(f"install:{host.id}"):
            if host.id in self._installed:
                return
            root = self._root(host)
            path = f"{root}/bin/{self._supervisor_name}"
            connection = await self._connection(host)
            async with connection.start_sftp_client() as sftp:
                for folder in ("bin", "artifacts", "instances"):
                    await sftp.makedirs(f"{root}/{folder}", exist_ok=True)
                if not await sftp.exists(path):
                    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
                    async with sftp.open(tmp, "wb") as file:
                        await file.write(self._supervisor)
                    await sftp.posix_rename(tmp, path)
            self._installed.add(host.id)

    async def _place(self, host: SshHost, source: Path, sha: str) -> None:
        """The artifact on the host: uploaded once, verified there, then kept by its digest."""
        if (host.id, sha) in self._placed:
            return
        async with self._lock(f"place:{host.id}"):
            if (host.id, sha) in self._placed:
                return
            began = time.perf_counter()
            target = f"{self._root(host)}/artifacts/{sha}.pyz"
            connection = await self._connection(host)
            async with connection.start_sftp_client() as sftp:
                copied = not await sftp.exists(target)
                if copied:
                    tmp = f"{self._root(host)}/artifacts/.{sha}.{uuid.uuid4().hex}.tmp"
                    await sftp.put(str(source), tmp)
            if copied:
                await self._supervise(host, "place", sha, tmp)
                self.uploads[host.id] = self.uploads.get(host.id, 0) + 1
                log.info("uploaded artifact %s to host %s", sha[:12], host.id)
            ARTIFACT_DISTRIBUTION_SECONDS.labels(copied=str(copied).lower()).observe(
                time.perf_counter() - began
            )
            self._placed.add((host.id, sha))

    async def _snapshot(self, host: SshHost, max_age_s: float | None = None) -> _Snapshot:
        """The instances running on the host, read again when older than the allowed age."""
        max_age = self.status_max_age_s if max_age_s is None else max_age_s
        asked = time.monotonic()
        async with self._lock(f"status:{host.id}"):
            # A read that began after this call was made is fresh enough for it.
            known = self._snapshots.get(host.id)
            if known is not None and (known.at >= asked or asked - known.at <= max_age):
                return known
            began = time.monotonic()
            answer = await self._supervise(host, "status")
            snapshot = _Snapshot(began, {str(r["id"]): r for r in answer["running"]})
            self._snapshots[host.id] = snapshot
            return snapshot
