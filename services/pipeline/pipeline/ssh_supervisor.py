"""The supervisor the SSH driver installs on each host: starts, stops and reports instances.

It runs on the host with the host's `python3` and the standard library only. The driver keeps
one `python3 supervise.py <root> serve` per host and SSH connection, which answers requests (one
JSON line each, see `serve`) side by side; `python3 supervise.py <root> <command> ...` answers one
(for a person on the host). The commands:

- `start` (the instance as JSON): starts the instance unless it already runs. A monitor process
  (`monitor <id>`) in a session of its own, with a clean environment, starts the workload in
  another session with PATH, LANG and what the pipeline passes (nothing of the SSH session),
  writes `instances/<id>/instance.json` (pid, port), waits for the workload and writes
  `exit.json` (code or signal) when it ends. Folders of instances that ended more than a week
  ago are removed then.
- `stop <id> <timeout>`: SIGTERM, then SIGKILL to the workload's process group after `timeout`.
- `status`: every instance whose workload runs (found again after a pipeline restart).
- `exit <id>`: why an instance is not running, with the tail of its log.
- `place <sha256> <tmp>`: moves an uploaded artifact into `artifacts/<sha256>.pyz` if its
  content has that digest (else deletes it).

An instance runs while its recorded pid is a live process whose environment names the instance
(`WORKLOAD_INSTANCE`), so a recycled pid is never taken for it. Linux only (reads /proc).
"""

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time


def _now():
    # Not datetime.UTC: hosts may run a Python older than 3.11.
    return datetime.datetime.now(datetime.timezone.utc).isoformat()  # noqa: UP017


def _read_json(path):
    try:
        with open(path) as file:
            return json.load(file)
    except (OSError, ValueError):
        return None


def _write_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as file:
        json.dump(data, file)
    os.replace(tmp, path)


def _runs(pid, instance_id):
    try:
        with open(f"/proc/{pid}/stat") as file:
            if file.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return False
        with open(f"/proc/{pid}/environ", "rb") as file:
            environ = file.read().split(b"\0")
    except (OSError, IndexError):
        return False
    return f"WORKLOAD_INSTANCE={instance_id}".encode() in environ


def _record(root, instance_id):
    record = _read_json(os.path.join(root, "instances", instance_id, "instance.json"))
    if record and _runs(int(record["pid"]), instance_id):
        return record
    return None


def _running(root):
    folder = os.path.join(root, "instances")
    found = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if os.path.exists(os.path.join(folder, name, "exit.json")):
            continue  # its monitor saw it end
        record = _record(root, name)
        if record is not None:
            found.append(record)
    return found


KEEP_ENDED_S = 7 * 86400  # how long the folder (log, exit status) of an ended instance stays


def _prune(root):
    """Remove the folders of instances that ended more than KEEP_ENDED_S ago."""
    folder = os.path.join(root, "instances")
    for name in os.listdir(folder):
        ended = os.path.join(folder, name, "exit.json")
        with contextlib.suppress(OSError):
            if time.time() - os.stat(ended).st_mtime > KEEP_ENDED_S:
                shutil.rmtree(os.path.join(folder, name))


def _free_port(bind, taken):
    while True:
        with socket.socket() as sock:
            sock.bind((bind, 0))
            port = sock.getsockname()[1]
        if port not in taken:
            return port


class Refused(Exception):
    """A request the supervisor cannot carry out; its message says why."""


CLEAN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


def monitor(root, instance_id):
    """In its own session: start the workload, record it, wait, record how it ended."""
    folder = os.path.join(root, "instances", instance_id)
    spec = _read_json(os.path.join(folder, "start.json"))
    port = int(spec["port"])
    env = dict(CLEAN_ENV)
    env.update(spec.get("env") or {})
    artifact = os.path.join(root, "artifacts", spec["sha256"] + ".pyz")
    command = [spec.get("python") or "python3", artifact, "--port", str(port)]
    command += ["--host", spec.get("bind") or "0.0.0.0"]
    with open(os.path.join(folder, "out.log"), "ab") as log:
        log.write(f"--- {_now()} start on port {port}\n".encode())
        log.flush()
        child = subprocess.Popen(
            command,
            env=env,
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    record = {
        "id": spec["id"],
        "app": spec["app"],
        "pid": child.pid,
        "port": port,
        "started_at": _now(),
    }
    _write_json(os.path.join(folder, "instance.json"), record)
    code = child.wait()
    ended = {"pid": child.pid, "at": _now()}
    if code < 0:
        ended["signal"] = -code
    else:
        ended["code"] = code
    _write_json(os.path.join(folder, "exit.json"), ended)
    return {}


def start(root, spec):
    instance_id = spec["id"]
    if not instance_id or "/" in instance_id or instance_id.startswith("."):
        raise Refused(f"bad instance id {instance_id!r}")
    os.makedirs(os.path.join(root, "instances"), exist_ok=True)
    with open(os.path.join(root, "start.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one start at a time: no id twice, no port twice
        record = _record(root, instance_id)
        if record is not None:
            return dict(record, adopted=True)
        _prune(root)
        folder = os.path.join(root, "instances", instance_id)
        os.makedirs(folder, exist_ok=True)
        for name in ("instance.json", "exit.json", "stop-requested"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(folder, name))
        taken = {int(r["port"]) for r in _running(root)}
        port = _free_port(spec.get("bind") or "0.0.0.0", taken)
        _write_json(os.path.join(folder, "start.json"), dict(spec, port=port))
        # The monitor gets a session of its own and a clean environment: it outlives this
        # SSH session, and nothing of the session reaches the workload.
        with open(os.path.join(folder, "monitor.log"), "ab") as errors:
            subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), root, "monitor", instance_id],
                env=CLEAN_ENV,
                cwd=folder,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
                start_new_session=True,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            record = _read_json(os.path.join(folder, "instance.json"))
            if record is not None:
                return dict(record, adopted=False)
            time.sleep(0.01)
        raise Refused(f"instance {instance_id}: the monitor wrote no record within 10 s")


def stop(root, instance_id, timeout):
    record = _record(root, instance_id)
    if record is None:
        return {"stopped": False}
    folder = os.path.join(root, "instances", instance_id)
    with open(os.path.join(folder, "stop-requested"), "w") as file:
        file.write(_now())
    pid = int(record["pid"])
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + float(timeout)
    while time.monotonic() < deadline and _runs(pid, instance_id):
        time.sleep(0.05)
    if _runs(pid, instance_id):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    return {"stopped": True}


def describe(root, instance_id):
    folder = os.path.join(root, "instances", instance_id)
    if _record(root, instance_id) is not None:
        how = "is running"
    else:
        ended = _read_json(os.path.join(folder, "exit.json"))
        if ended is None:
            how = "is not running (no exit recorded)"
        elif "signal" in ended:
            number = int(ended["signal"])
            try:
                name = signal.Signals(number).name
            except ValueError:
                name = f"signal {number}"
            how = f"was killed by {name} ({number}) at {ended['at']}"
        else:
            how = f"exited with code {ended['code']} at {ended['at']}"
        if ended is not None and os.path.exists(os.path.join(folder, "stop-requested")):
            how += ", stopped by the pipeline"
    tail = ""
    with contextlib.suppress(OSError), open(os.path.join(folder, "out.log"), "rb") as file:
        file.seek(0, os.SEEK_END)
        file.seek(max(0, file.tell() - 400))
        tail = file.read().decode(errors="replace").strip().replace("\n", " | ")
    return {"how": how, "log": tail}


def place(root, sha, tmp):
    digest = hashlib.sha256()
    with open(tmp, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != sha:
        os.remove(tmp)
        raise Refused(f"uploaded artifact has sha256 {digest.hexdigest()}, not {sha}")
    os.replace(tmp, os.path.join(root, "artifacts", sha + ".pyz"))
    return {"placed": sha}


def handle(root, command, args, given):
    """The answer to one request."""
    if command == "start":
        return start(root, given)
    if command == "stop":
        return stop(root, args[0], args[1])
    if command == "status":
        return {"running": _running(root)}
    if command == "exit":
        return describe(root, args[0])
    if command == "place":
        return place(root, args[0], args[1])
    if command == "monitor":
        return monitor(root, args[0])
    raise Refused(f"unknown command {command!r}")


def serve(root):
    """Answer requests, one JSON line each, until stdin ends; each in a thread of its own.

    A request is `{"n": 1, "command": "status", "args": [], "input": null}`; its answer
    `{"n": 1, "ok": true, "answer": {...}}` or `{"n": 1, "ok": false, "error": "..."}`.
    """
    out = threading.Lock()

    def answer(line):
        request = json.loads(line)
        try:
            given = request.get("input")
            result = handle(root, request["command"], request.get("args") or [], given)
            reply = {"n": request.get("n"), "ok": True, "answer": result}
        except Exception as error:
            reply = {"n": request.get("n"), "ok": False, "error": f"{error}"}
        with out:
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()

    workers: list[threading.Thread] = []  # (a local annotation: never evaluated)
    for line in sys.stdin:
        if line.strip():
            worker = threading.Thread(target=answer, args=(line,))
            worker.start()
            workers = [w for w in workers if w.is_alive()] + [worker]
    for worker in workers:
        worker.join()


def main(argv):
    root, command, args = os.path.abspath(argv[1]), argv[2], argv[3:]
    if command == "serve":
        serve(root)
        return
    given = json.load(sys.stdin) if command == "start" else None
    try:
        json.dump(handle(root, command, args, given), sys.stdout)
    except Refused as error:
        raise SystemExit(str(error)) from None


if __name__ == "__main__":
    main(sys.argv)
