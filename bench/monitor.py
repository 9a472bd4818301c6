"""Benchmark of the monitor's scrape round over real HTTP: 1,000 targets of ~200 series every 5 s.

One separate process (uvicorn) serves every target at `/t/<n>/metrics`, each body the sample
workload's ~200 series with counters advancing every round. In the same run this prints:

- the monitor: its Scraper (httpx, per-target timeout and size cap, series cap) and aggregate_app
  per application, in this process on the real interval: CPU seconds per round, samples per CPU
  second, wall seconds per round, and the share of one core it needs to hold the interval;
- the baseline: the bare prometheus-client text parser looping over the same bodies;
- a real Prometheus server (the Debian `prometheus` binary, when installed) scraping the same
  1,000 targets at the same interval, its CPU read from /proc, and the CPU-per-sample ratio.

Persistence (target states, rollups, outbox) is not in these figures.

    .venv/bin/python bench/monitor.py [--targets 1000] [--apps 50] [--rounds 4] [--interval 5]
"""

import argparse
import asyncio
import contextlib
import importlib.util
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# This file is named like the service package: keep its directory off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import httpx  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from monitor.domain import Snapshot, Target, aggregate_app, align  # noqa: E402
from monitor.scraper import Scraper  # noqa: E402


def _load_exposition() -> Any:
    spec = importlib.util.spec_from_file_location("monitor_parse_bench", HERE / "monitor_parse.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.exposition


exposition = _load_exposition()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_targets(ports: list[int], interval: float) -> None:
    """The target process: every body is rendered once per round and then served from memory."""
    import uvicorn

    cache: dict[int, tuple[int, bytes]] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        parts = scope["path"].strip("/").split("/")
        number = int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else -1
        round_no = int(time.time() // interval)
        held = cache.get(number)
        if held is None or held[0] != round_no:
            held = (round_no, exposition(number, round_no).encode())
            cache[number] = held
        body = held[1]
        headers = [
            (b"content-type", b"text/plain; version=0.0.4"),
            (b"content-length", b"%d" % len(body)),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    sockets = []
    for port in ports:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sockets.append(sock)
    config = uvicorn.Config(app, log_level="warning", access_log=False, backlog=4096)
    asyncio.run(uvicorn.Server(config).serve(sockets=sockets))


def wait_listening(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


async def run_monitor(
    targets: list[Target], rounds: int, interval: float
) -> tuple[list[float], list[float], list[int], int]:
    """The monitor's round on the real interval: CPU and wall seconds, samples, failures."""
    step = timedelta(seconds=interval)
    # The service's defaults (MONITOR_SCRAPE_CONCURRENCY=128, MONITOR_SCRAPE_POOLS=16).
    limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)
    clients = [httpx.AsyncClient(limits=limits) for _ in range(16)]
    async with contextlib.AsyncExitStack() as stack:
        for client in clients:
            await stack.enter_async_context(client)
        scraper = Scraper(
            clients,
            timeout_s=interval * 0.8,
            max_bytes=4 * 1024 * 1024,
            series_limit=5000,
            concurrency=128,
        )
        last: dict[str, Snapshot] = {}
        cpu: list[float] = []
        wall: list[float] = []
        samples: list[int] = []
        failures = 0
        for round_no in range(rounds + 1):
            now = datetime.now(UTC)
            boundary = align(now, step) + step
            await asyncio.sleep((boundary - now).total_seconds())
            cpu_before, wall_before = time.process_time(), time.perf_counter()
            results = await scraper.scrape_all(targets)
            previous: dict[str, list[Snapshot]] = defaultdict(list)
            current: dict[str, list[Snapshot]] = defaultdict(list)
            for result in results:
                if result.snapshot is None:
                    continue
                current[result.target.app_id].append(result.snapshot)
                before = last.get(result.target.instance_id)
                if before is not None:
                    previous[result.target.app_id].append(before)
            for app, snapshots in current.items():
                aggregate_app(app, previous[app], snapshots, boundary - step, boundary, boundary)
            for result in results:
                if result.snapshot is not None:
                    last[result.target.instance_id] = result.snapshot
            if round_no == 0:
                continue  # the first round opens the connections
            cpu.append(time.process_time() - cpu_before)
            wall.append(time.perf_counter() - wall_before)
            samples.append(sum(r.series for r in results))
            failures += sum(not r.up for r in results)
        return cpu, wall, samples, failures


def baseline(bodies: list[str]) -> tuple[float, int]:
    """CPU seconds and samples of the bare prometheus-client parser over every body."""
    count = 0
    started = time.process_time()
    for body in bodies:
        for family in text_string_to_metric_families(body):
            count += len(family.samples)
    return time.process_time() - started, count


def cpu_seconds_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def prometheus_metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise KeyError(name)


def run_prometheus(
    binary: str, ports: list[int], count: int, seconds: float, interval: float
) -> tuple[float, float, float]:
    """Prometheus scraping the same targets: CPU seconds, samples appended, measured seconds."""
    workdir = Path(tempfile.mkdtemp(prefix="ooda-bench-prom-"))
    try:
        groups = [
            {
                "targets": [f"127.0.0.1:{ports[i % len(ports)]}"],
                "labels": {"__metrics_path__": f"/t/{i}/metrics", "instance": f"t{i}"},
            }
            for i in range(count)
        ]
        (workdir / "targets.json").write_text(json.dumps(groups))
        (workdir / "prometheus.yml").write_text(
            f"global:\n  scrape_interval: {int(interval * 1000)}ms\n"
            f"  scrape_timeout: {int(interval * 800)}ms\n"
            "scrape_configs:\n  - job_name: bench\n    file_sd_configs:\n"
            f"      - files: ['{workdir / 'targets.json'}']\n"
        )
        port = free_port()
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_listening(port)
            time.sleep(interval * 3)  # discovery, the first scrapes, the head block opening
            cpu0 = cpu_seconds_of(process.pid)
            appended0 = prometheus_metric(port, "prometheus_tsdb_head_samples_appended_total")
            began = time.monotonic()
            time.sleep(seconds)
            cpu1 = cpu_seconds_of(process.pid)
            appended1 = prometheus_metric(port, "prometheus_tsdb_head_samples_appended_total")
            return cpu1 - cpu0, appended1 - appended0, time.monotonic() - began
        finally:
            process.terminate()
            process.wait(30)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    """Run the monitor, the baseline and Prometheus on the same targets; print side by side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--apps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--ports", type=int, default=50, help="ports the target process serves")
    parser.add_argument("--no-prometheus", action="store_true")
    args = parser.parse_args()

    # One process, several ports (targets on distinct ports use distinct connection pools).
    ports = sorted({free_port() for _ in range(args.ports)})
    server = multiprocessing.get_context("fork").Process(
        target=serve_targets, args=(ports, args.interval), daemon=True
    )
    server.start()
    try:
        for port in ports:
            wait_listening(port)
        targets = [
            Target(
                f"app-{i % args.apps}",
                f"t{i}",
                f"http://127.0.0.1:{ports[i % len(ports)]}/t/{i}/metrics",
            )
            for i in range(args.targets)
        ]
        cpu, wall, samples, failures = asyncio.run(run_monitor(targets, args.rounds, args.interval))
        bodies = [exposition(i, 7) for i in range(args.targets)]
        base_cpu, base_samples = baseline(bodies)
        prom: tuple[float, float, float] | None = None
        binary = shutil.which("prometheus")
        if binary and not args.no_prometheus:
            prom = run_prometheus(
                binary, ports, args.targets, args.rounds * args.interval, args.interval
            )
    finally:
        server.terminate()
        server.join(10)

    per_round = statistics.median(cpu)
    kept = statistics.median(samples)
    print(
        f"{args.targets} targets over HTTP, {kept / args.targets:.0f} series each, "
        f"{args.apps} apps, interval {args.interval:g}s, median of {len(cpu)} rounds; "
        f"failed scrapes: {failures}"
    )
    print(f"{'':40}{'CPU s/round':>12}{'samples/CPU s':>15}{'cores':>8}{'wall s/round':>14}")
    print(
        f"{'monitor: scrape + parse + aggregate':40}{per_round:12.3f}{kept / per_round:15,.0f}"
        f"{per_round / args.interval:8.3f}{statistics.median(wall):14.3f}"
    )
    print(
        f"{'baseline: bare parser loop, same bodies':40}{base_cpu:12.3f}"
        f"{base_samples / base_cpu:15,.0f}{base_cpu / args.interval:8.3f}{'':>14}"
    )
    monitor_per_sample = per_round / kept
    print(
        f"monitor / baseline CPU per sample: {monitor_per_sample / (base_cpu / base_samples):.2f}x"
    )
    if prom is None:
        print("prometheus: not installed (apt-get install prometheus) or skipped")
        return
    prom_cpu, prom_samples, prom_seconds = prom
    rounds = prom_seconds / args.interval
    print(
        f"{'prometheus ' + '(Debian binary, same targets)':40}{prom_cpu / rounds:12.3f}"
        f"{prom_samples / prom_cpu:15,.0f}{prom_cpu / prom_seconds:8.3f}{'':>14}"
    )
    ratio = monitor_per_sample / (prom_cpu / prom_samples)
    print(f"monitor / prometheus CPU per sample: {ratio:.2f}x")


if __name__ == "__main__":
    main()
