"""Runtime drivers: how the pipeline starts, stops and finds instances. `local` runs processes.

The local driver runs each instance as `python3 <artifact> --port N` in its own session (so it
outlives a crash of the pipeline), and keeps `<data_dir>/instances/<id>/instance.json` with the
pid and port beside the instance's log. Starting is idempotent by instance id: an instance whose
process still runs is adopted, never started twice. Blocking calls; callers use a thread.

Instances never see the pipeline's secrets: each gets only its own environment (PATH, the
WORKLOAD_* variables and its declared env), and, when the pipeline runs as root, runs as an
unprivileged workload user, so it can read neither `/proc/<pipeline>/environ` nor the
pipeline's files.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from pipeline.metrics import INSTANCES_STARTED, INSTANCES_STOPPED

log = logging.getLogger(__name__)

LOCALHOST = "127.0.0.1"  # where instances answer unless their driver says otherwise


class DriverError(RuntimeError):
    """The driver cannot act on an instance's host (unknown, unreachable, refused); the batch
    that asked fails with this reason."""


@dataclass(frozen=True)
class InstanceSpec:
    """What to run: one instance of an application's version, placed on a host and zone."""

    id: str
    app: str
    version: str
    host: str
    zone: str
    artifact: Path
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Running:
    """A started instance: its process, port and start time."""

    id: str
    app: str
    host: str
    pid: int
    port: int
    started_at: str
    address: str = LOCALHOST

    @property
    def endpoint(self) -> str:
        """`http://host:port` of the instance."""
        return f"http://{self.address}:{self.port}"


class Driver(Protocol):
    """What the executor needs from a runtime driver."""

    def start(self, spec: InstanceSpec) -> Running:
        """Start the instance, or return it if it already runs."""
        ...

    def stop(self, instance_id: str) -> None:
        """Stop the instance gracefully (then forcibly); nothing if it does not run."""
        ...

    def alive(self, instance_id: str) -> bool:
        """Whether the instance's process runs."""
        ...

    def running(self) -> list[Running]:
        """Every instance whose process runs (found again after a restart)."""
        ...

    def describe_exit(self, instance_id: str) -> str:
        """Why the instance is not running, with the tail of its log."""
        ...


WORKLOAD_PATH = "/usr/local/bin:/usr/bin:/bin"
"""The PATH of every instance, also where the interpreter is looked up: never the pipeline's."""


@dataclass(frozen=True)
class WorkloadUser:
    """The unprivileged account instances run as."""

    name: str
    uid: int
    gid: int


def workload_user(name: str) -> WorkloadUser | None:
    """The account to run instances as when the pipeline runs as root (None otherwise).

    A missing account is created as a system user with its own group, no home and no login
    shell. Not being root, the pipeline cannot switch users: instances then run as its own
    user, with their own environment only (warned once).
    """
    if os.geteuid() != 0:
        _warn_same_user()
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        entry = _create_system_user(name)
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise ValueError(f"the workload user {name!r} must not be root or in the root group")
    return WorkloadUser(name=name, uid=entry.pw_uid, gid=entry.pw_gid)


def _create_system_user(name: str) -> pwd.struct_passwd:
    command = ["useradd", "--system", "--user-group", "--no-create-home"]
    command += ["--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        why = done.stderr.strip() or f"useradd exited with {done.returncode}"
    except (OSError, subprocess.SubprocessError) as error:
        why = str(error)
    try:
        entry = pwd.getpwnam(name)  # also when another process created it meanwhile
    except KeyError:
        raise RuntimeError(
            f"cannot create the workload user {name!r} ({why}); create it, or set "
            "PIPELINE_WORKLOAD_USER to an existing unprivileged user"
        ) from None
    log.info("created the workload user %s (uid %d)", name, entry.pw_uid)
    return entry


def check_interpreter(python: str, user: WorkloadUser | None) -> None:
    """Raise RuntimeError unless the interpreter starts as the user instances run as.

    Checked at start-up: otherwise every start would fail, and a rollout would wait forever.
    """
    command = [shutil.which(python, path=WORKLOAD_PATH) or python, "-c", "pass"]
    try:
        done = subprocess.run(
            command,
            env={"PATH": WORKLOAD_PATH},
            capture_output=True,
            timeout=30,
            check=False,
            user=user.uid if user else None,
            group=user.gid if user else None,
            extra_groups=[] if user else None,
        )
        why = done.stderr.decode(errors="replace").strip() if done.returncode else ""
    except (OSError, subprocess.SubprocessError) as error:
        why = str(error)
    if why:
        who = f"the workload user {user.name}" if user else "the pipeline's user"
        raise RuntimeError(
            f"{who} cannot run the interpreter {command[0]} ({why}); set PIPELINE_PYTHON to one "
            "it may run"
        )


@functools.cache
def _warn_same_user() -> None:
    log.warning(
        "the pipeline does not run as root, so instances run as its own user (uid %d): they get "
        "only their own environment, but can read this user's files and processes",
        os.geteuid(),
    )


def _free_port(taken: set[int]) -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in taken:
            taken.add(port)
            return port


def runs_instance(pid: int, instance_id: str) -> bool:
    """Whether `pid` is a live (non-zombie) process started for `instance_id`."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except (OSError, IndexError):
        return False
    return f"WORKLOAD_INSTANCE={instance_id}".encode() in environ


class LocalDriver:
    """Instances as processes on 127.0.0.1, with logs and records under `<data_dir>/instances`."""

    def __init__(
        self,
        data_dir: Path,
        python: str = "python3",
        stop_timeout_s: float = 10.0,
        user: WorkloadUser | None = None,
    ):
        self.root = data_dir / "instances"
        self.python = shutil.which(python, path=WORKLOAD_PATH) or python
        self.stop_timeout_s = stop_timeout_s
        self.user = user
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._ports: set[int] = set()
        self._exits: dict[str, int] = {}

    def _record_path(self, instance_id: str) -> Path:
        return self.root / instance_id / "instance.json"

    def _read(self, instance_id: str) -> Running | None:
        try:
            data = json.loads(self._record_path(instance_id).read_text())
            return Running(**data)
        except (OSError, ValueError, TypeError):
            return None

    def _reap(self, instance_id: str) -> None:
        child = self._children.get(instance_id)
        if child is not None and child.poll() is not None:
            self._exits[instance_id] = child.returncode
            del self._children[instance_id]

    def alive(self, instance_id: str) -> bool:
        self._reap(instance_id)
        if instance_id in self._children:
            return True  # our own child, maybe not exec'd yet (its environ is still ours)
        record = self._read(instance_id)
        return record is not None and runs_instance(record.pid, instance_id)

    def start(self, spec: InstanceSpec) -> Running:
        if self.alive(spec.id):
            found = self._read(spec.id)
            assert found is not None
            return found
        folder = self.root / spec.id
        folder.mkdir(parents=True, exist_ok=True)
        port = _free_port(self._ports)
        env = {
            "PATH": WORKLOAD_PATH,
            **spec.env,
            "WORKLOAD_APP": spec.app,
            "WORKLOAD_VERSION": spec.version,
            "WORKLOAD_INSTANCE": spec.id,
            "WORKLOAD_ZONE": spec.zone,
            "WORKLOAD_HOST": spec.host,
        }
        # The artifact is handed over open: the workload user reads it without needing to
        # enter the pipeline's folders (often private, like /root or pytest's temp folders).
        artifact = os.open(spec.artifact, os.O_RDONLY)
        try:
            with (folder / "out.log").open("ab") as log:
                log.write(f"--- {datetime.now(UTC).isoformat()} start on port {port}\n".encode())
                log.flush()
                child = subprocess.Popen(
                    [self.python, f"/proc/self/fd/{artifact}", "--port", str(port)],
                    env=env,
                    pass_fds=(artifact,),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # outlives the pipeline, which adopts it on restart
                    cwd=folder,  # lets a restart find a process whose record was never written
                    user=self.user.uid if self.user else None,
                    group=self.user.gid if self.user else None,
                    extra_groups=[] if self.user else None,  # none of the pipeline's groups
                )
        finally:
            os.close(artifact)
        self._children[spec.id] = child
        running = Running(
            id=spec.id,
            app=spec.app,
            host=spec.host,
            pid=child.pid,
            port=port,
            started_at=datetime.now(UTC).isoformat(),
        )
        tmp = folder / "instance.json.tmp"
        tmp.write_text(json.dumps(asdict(running)))
        os.replace(tmp, self._record_path(spec.id))
        INSTANCES_STARTED.inc()
        return running

    def stop(self, instance_id: str) -> None:
        record = self._read(instance_id)
        if record is None or not self.alive(instance_id):
            self._children.pop(instance_id, None)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        while time.monotonic() < deadline and self.alive(instance_id):
            time.sleep(0.05)
        if self.alive(instance_id):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(record.pid, signal.SIGKILL)
        child = self._children.pop(instance_id, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(5)
        self._ports.discard(record.port)
        INSTANCES_STOPPED.inc()

    def running(self) -> list[Running]:
        if not self.root.exists():
            return []
        found = []
        for folder in sorted(self.root.iterdir()):
            record = self._read(folder.name)
            if record is not None and self.alive(folder.name):
                self._ports.add(record.port)
                found.append(record)
        self._kill_strays({record.pid for record in found})
        return found

    def _kill_strays(self, recorded: set[int]) -> None:
        """Kill processes running in an instance folder that no record names.

        A crash between spawning a process and writing its record leaves such a process; the
        batch re-run starts the instance again, so the stray would be a duplicate.
        """
        root = str(self.root.resolve())
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in recorded:
                continue
            try:
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if cwd.startswith(root + os.sep) and int(entry.name) != os.getpid():
                instance_id = Path(cwd).name
                if runs_instance(int(entry.name), instance_id):
                    log.warning("killing stray process %s of instance %s", entry.name, instance_id)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(entry.name), signal.SIGKILL)

    def describe_exit(self, instance_id: str) -> str:
        self._reap(instance_id)
        code = self._exits.get(instance_id)
        log = self.root / instance_id / "out.log"
        tail = ""
        with contextlib.suppress(OSError):
            tail = log.read_text(errors="replace")[-400:].strip().replace("\n", " | ")
        how = f"exited with code {code}" if code is not None else "is not running"
        return f"instance {instance_id} {how}; log: {tail}"
