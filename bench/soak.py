"""Soak: the closed loop under steady load for `--minutes`, with fuzzing traffic beside it.

Starts the five services as real processes on fresh databases and a topic prefix (as
`bench/loop.py` does), declares one sample-workload application and sends it a steady load it can
serve (examples/loadgen.py). Beside it, a fuzz client sends random requests, schema-valid and
schema-invalid (bodies, path and query values drawn with hypothesis-jsonschema from each service's
/openapi.json; wrong types, NUL characters, huge numbers, raw bytes; admin, team or no token), to
every operation of all five services on 127.0.0.1, bounded by `--fuzz-rps`, and counts the
answers by status class (PUT /v1/freeze is left out: a global freeze would stop the loop itself).

It samples each service process after `--warmup` seconds and at the end of the load: RSS
(/proc/PID/status VmRSS), socket fds (/proc/PID/fd) and ESTABLISHED TCP connections among them.
After the load stops it waits for the loop to quiesce, then checks for lost events: every
consumer group's committed offset at the end of every prefixed topic (Kafka's own numbers), the
services' `ooda_consumer_lag` and `ooda_outbox_backlog` at 0, and no `.dlq` record about the
loaded application.

Exits 1 on any 5xx, any unconsumed or unpublished event, a DLQ record from the load, or RSS
growth > 10% (ESTABLISHED connections: > 10% and more than 2).

Usage: set -a; . .local/ooda.env; set +a
       .venv/bin/python bench/soak.py [--minutes 30] [--rate 15] [--fuzz-rps 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import random
import re
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from ooda import scenario
from ooda.testing import REPO, SERVICES, resolve_infra, unique


def _module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


loop = _module("ooda_bench_loop", REPO / "bench/loop.py")
loadgen = loop.loadgen

GROWTH_LIMIT = 0.10
EXCLUDED = {("put", "/v1/freeze")}


# --- process samples -------------------------------------------------------------------------


@dataclass
class Sample:
    rss_kib: int
    sockets: int
    established: int


def _established_inodes() -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f)
            for line in f:
                cols = line.split()
                if cols[3] == "01":  # TCP_ESTABLISHED
                    inodes.add(cols[9])
    return inodes


def sample(pid: int) -> Sample:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    sockets: set[str] = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                sockets.add(target[8:-1])
    return Sample(rss, len(sockets), len(sockets & _established_inodes()))


# --- fuzz client -----------------------------------------------------------------------------


@dataclass
class FuzzStats:
    classes: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    transport_errors: Counter[str] = field(default_factory=Counter)

    @property
    def sent(self) -> int:
        return sum(self.classes.values()) + sum(self.transport_errors.values())


@dataclass
class Operation:
    service: str
    method: str
    path: str
    params: list[dict[str, Any]]
    body: dict[str, Any] | None  # JSON schema of an application/json body
    raw_body: bool  # some other content type (artifact upload): random bytes


def operations(service: str, doc: dict[str, Any]) -> list[Operation]:
    found = []
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if method not in ("get", "put", "post", "delete", "patch"):
                continue
            if (method, path) in EXCLUDED:
                continue
            content = (op.get("requestBody") or {}).get("content") or {}
            body = content.get("application/json", {}).get("schema")
            params = list(item.get("parameters", [])) + list(op.get("parameters", []))
            found.append(
                Operation(service, method, path, params, body, bool(content) and body is None)
            )
    return found


def _strategy(schema: dict[str, Any] | None, components: dict[str, Any]) -> Any:
    from hypothesis import strategies as st
    from hypothesis_jsonschema import from_schema

    anything = from_schema({})
    if schema is None:
        return anything
    try:
        valid = from_schema({**schema, "components": components})
    except Exception:
        return anything
    return st.one_of(valid, valid, anything)


NASTY = ["\x00", "a\x00b", "9" * 40, "-1", "1e309", "[", "../../etc", "%00", "", " " * 3, "é" * 300]


def _invalid_scalar() -> Any:
    from hypothesis import strategies as st

    return st.one_of(
        st.sampled_from(NASTY),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=30),
    )


def fuzz_operation(
    op: Operation,
    base: str,
    components: dict[str, Any],
    tokens: list[dict[str, str]],
    stats: FuzzStats,
    pace: Any,
    stop: threading.Event,
    examples: int,
) -> None:
    """Send `examples` generated requests to one operation (hypothesis drives the drawing)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    param_st = {
        (p["in"], p["name"]): _strategy(p.get("schema"), components)
        for p in op.params
        if p.get("in") in ("path", "query")
    }
    body_st = _strategy(op.body, components)

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def run(data: Any) -> None:
        if stop.is_set():
            return
        path = op.path
        query: dict[str, str] = {}
        for (where, name), strategy in param_st.items():
            if where == "path":
                value = data.draw(st.one_of(strategy, _invalid_scalar()))
                quoted = urllib.parse.quote(str(value), safe="") or "x"
                path = path.replace("{" + name + "}", quoted)
            elif data.draw(st.booleans()):
                value = data.draw(st.one_of(strategy, _invalid_scalar()))
                query[name] = value if isinstance(value, str) else json.dumps(value)
        kwargs: dict[str, Any] = {"params": query}
        if op.body is not None and data.draw(st.integers(0, 9)) > 0:
            kwargs["json"] = data.draw(body_st)
        elif op.body is not None or op.raw_body:
            kwargs["content"] = data.draw(st.binary(max_size=256))
        headers = data.draw(st.sampled_from(tokens))
        pace()
        method = op.method.upper()
        try:
            with httpx.Client(timeout=10.0) as client:
                response = client.request(method, base + path, headers=headers, **kwargs)
        except httpx.HTTPError as e:
            stats.transport_errors[type(e).__name__] += 1
            return
        stats.classes[f"{response.status_code // 100}xx"] += 1
        if response.status_code >= 500:
            line = (
                f"{op.service} {method} {op.path} -> {response.status_code} "
                f"({base + path}) {response.text[:200]!r}"
            )
            stats.server_errors.append(line)
            print(f"5xx: {line}", flush=True)

    run()


def fuzz(
    urls: dict[str, str],
    tokens: list[dict[str, str]],
    rps: float,
    max_requests: int,
    stats: FuzzStats,
    stop: threading.Event,
    seed: int,
) -> None:
    """Round-robin over every operation of every service until `stop` or `max_requests`."""
    warnings.filterwarnings("ignore")
    rng = random.Random(seed)
    docs = {s: httpx.get(f"{u}/openapi.json", timeout=10).json() for s, u in urls.items()}
    ops = [op for s, doc in docs.items() for op in operations(s, doc)]
    print(f"fuzz: {len(ops)} operations over {len(docs)} services, <= {rps} req/s", flush=True)
    interval = 1.0 / rps
    last = [0.0]

    def pace() -> None:
        wait = last[0] + interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        last[0] = time.monotonic()

    while not stop.is_set() and stats.sent < max_requests:
        rng.shuffle(ops)
        for op in ops:
            if stop.is_set() or stats.sent >= max_requests:
                break
            components = docs[op.service].get("components", {})
            try:
                fuzz_operation(op, urls[op.service], components, tokens, stats, pace, stop, 5)
            except Exception as e:  # a generation problem, not an answer of the service
                stats.transport_errors[f"generate:{type(e).__name__}"] += 1


# --- steady load -----------------------------------------------------------------------------


@dataclass
class Load:
    sent: int = 0
    ok: int = 0
    failed: int = 0

    async def drive(self, cmdb_url: str, app: str, rate: float, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=5.0) as cmdb:
            endpoints = loadgen.cmdb_endpoints(cmdb, cmdb_url, app)
            gen = loadgen.LoadGenerator(endpoints, timeout_s=1.0)
            while not stop.is_set():
                for step in await gen.replay([1.0] * 5, rate, 1.0):
                    self.sent += step.sent
                    self.ok += step.ok
                    self.failed += step.failed + step.dropped


# --- lost events -----------------------------------------------------------------------------


async def metric_sums(http: httpx.AsyncClient, urls: dict[str, str]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for service, url in urls.items():
        text = (await http.get(f"{url}/metrics")).text
        sums = {"ooda_consumer_lag": 0.0, "ooda_outbox_backlog": 0.0}
        for line in text.splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in sums:
                sums[name] += float(line.rsplit(" ", 1)[1])
        out[service] = sums
    return out


async def _partitions(admin: AIOKafkaAdminClient, prefix: str) -> list[TopicPartition]:
    topics = [t for t in await admin.list_topics() if t.startswith(prefix)]
    return [
        TopicPartition(t["topic"], p["partition"])
        for t in await admin.describe_topics(topics)
        for p in t["partitions"]
    ]


async def kafka_lag(running: Any, app: str) -> tuple[dict[str, int], dict[str, int], list[str]]:
    """Per consumer group, records behind the end of the prefixed topics; per .dlq topic, its
    record count; and the .dlq records that name the loaded application (key or value)."""
    options = running.infra.kafka().options()
    admin = AIOKafkaAdminClient(**options)
    probe = AIOKafkaConsumer(**options, enable_auto_commit=False)
    await admin.start()
    await probe.start()
    try:
        parts = await _partitions(admin, running.prefix)
        groups: dict[str, dict[TopicPartition, Any]] = {}
        for group, *_ in await admin.list_consumer_groups():
            committed = await admin.list_consumer_group_offsets(group)
            mine = {tp: m for tp, m in committed.items() if tp.topic.startswith(running.prefix)}
            if mine:
                groups[group] = mine
        every = set(parts).union(*(set(m) for m in groups.values()))
        ends = await probe.end_offsets(list(every))
        lag = {
            group: sum(max(ends[tp] - m.offset, 0) for tp, m in mine.items())
            for group, mine in groups.items()
        }
        dead = [tp for tp in parts if tp.topic.endswith(".dlq")]
        dlq = {tp.topic.removeprefix(running.prefix): 0 for tp in dead}
        found: list[str] = []
        if dead:
            probe.assign(dead)
            await probe.seek_to_beginning(*dead)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                positions = [await probe.position(tp) for tp in dead]
                if all(at >= ends[tp] for at, tp in zip(positions, dead, strict=True)):
                    break
                for records in (await probe.getmany(timeout_ms=1000)).values():
                    for r in records:
                        dlq[r.topic.removeprefix(running.prefix)] += 1
                        key = (r.key or b"").decode(errors="replace")
                        text = key + " " + (r.value or b"").decode(errors="replace")
                        if app in text:
                            found.append(f"{r.topic}@{r.offset}: {text[:200]}")
        return lag, dlq, found
    finally:
        await probe.stop()
        await admin.close()


async def quiesce(
    http: httpx.AsyncClient, running: Any, urls: dict[str, str], app: str, timeout_s: float
) -> tuple[float, dict[str, int], dict[str, int], list[str], dict[str, dict[str, float]]]:
    """Wait until every group is at the end and every outbox is empty; the last figures."""
    started = time.monotonic()
    while True:
        lag, dlq, from_load = await kafka_lag(running, app)
        metrics = await metric_sums(http, urls)
        behind = sum(lag.values()) + sum(sum(m.values()) for m in metrics.values())
        waited = time.monotonic() - started
        if behind == 0 or waited > timeout_s:
            return waited, lag, dlq, from_load, metrics
        await asyncio.sleep(1.0)


# --- the run ---------------------------------------------------------------------------------


def growth(start: float, end: float) -> float:
    return (end - start) / start if start else 0.0


async def main(args: argparse.Namespace) -> int:
    infra = resolve_infra()
    started = time.time()
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ooda-bench-soak-") as tmp:
        workdir = Path(tmp)
        workload = scenario.build_workload(workdir / "workload.pyz")
        running = await loop.start_platform(infra, workdir / "platform", args.interval)
        print(f"platform up, prefix {running.prefix}, logs {running.logs}", flush=True)
        urls = {n: running.services[n].url for n in SERVICES}
        pids = {n: running.services[n].process.pid for n in SERVICES}
        stop_fuzz = threading.Event()
        fuzz_stats = FuzzStats()
        load = Load()
        try:
            async with httpx.AsyncClient(timeout=30.0) as http:
                platform = running.scenario()
                await scenario.register_topology(http, platform)
                artifact = await scenario.upload_artifact(http, platform, workload)
                plan = scenario.AppPlan(
                    app=unique("soak"),
                    min_replicas=2,
                    max_replicas=4,
                    desired=2,
                    capacity_rps=loop.CAPACITY_RPS,
                )
                await scenario.declare_app(http, platform, plan, artifact)
                await scenario.wait_for_instances(http, platform, plan.app, plan.desired, 120)
                await loop.set_elastic_policy(http, running, plan, 0)
                print(f"app {plan.app}: {plan.desired} instances ready; load {args.rate} req/s")

                tokens = [
                    platform.headers("soak-fuzzer"),
                    platform.headers("soak-fuzzer"),
                    platform.headers("soak-fuzzer"),
                    platform.headers("soak-fuzzer", "team:fuzz"),
                    {},
                ]
                fuzzer = threading.Thread(
                    target=fuzz,
                    args=(
                        urls,
                        tokens,
                        args.fuzz_rps,
                        args.fuzz_max,
                        fuzz_stats,
                        stop_fuzz,
                        args.seed,
                    ),
                    daemon=True,
                )
                stop_load = asyncio.Event()
                driver = asyncio.create_task(
                    load.drive(urls["cmdb"], plan.app, args.rate, stop_load)
                )
                fuzzer.start()
                total_s = args.minutes * 60
                await asyncio.sleep(min(args.warmup, total_s / 2))
                first = {n: sample(pid) for n, pid in pids.items()}
                print(f"start sample at +{time.time() - started:.0f}s", flush=True)
                end_at = time.monotonic() + total_s - min(args.warmup, total_s / 2)
                while time.monotonic() < end_at:
                    await asyncio.sleep(min(30.0, max(end_at - time.monotonic(), 0)))
                    alive = [n for n, p in running.services.items() if p.process.poll() is None]
                    print(
                        f"+{time.time() - started:.0f}s load sent {load.sent} ok {load.ok}, "
                        f"fuzz {dict(fuzz_stats.classes)}, services alive {len(alive)}/5",
                        flush=True,
                    )
                last = {n: sample(pid) for n, pid in pids.items()}
                stop_fuzz.set()
                stop_load.set()
                await asyncio.gather(driver, return_exceptions=True)
                await asyncio.to_thread(fuzzer.join, 60)

                waited, lag, dlq, from_load, metrics = await quiesce(
                    http, running, urls, plan.app, args.quiesce
                )
        finally:
            stop_fuzz.set()
            await loop.stop_platform(running)
            kept = Path(tempfile.mkdtemp(prefix="ooda-soak-logs-"))
            shutil.copytree(running.logs, kept, dirs_exist_ok=True)
            print(f"service logs kept in {kept}")

    print(f"\n== soak: {args.minutes} min, steady load {args.rate} req/s on one app, fuzz ==")
    print(
        f"{'service':<9} {'RSS start':>10} {'RSS end':>10} {'growth':>7} "
        f"{'sock s/e':>9} {'estab s/e':>10}  verdict"
    )
    for n in SERVICES:
        a, b = first[n], last[n]
        g = growth(a.rss_kib, b.rss_kib)
        gc = growth(a.established, b.established)
        bad = g > GROWTH_LIMIT or (gc > GROWTH_LIMIT and b.established - a.established > 2)
        verdict = "GROWTH" if bad else "ok"
        if bad:
            failures.append(f"{n}: RSS {g:+.1%}, established {a.established}->{b.established}")
        print(
            f"{n:<9} {a.rss_kib / 1024:>8.1f}MB {b.rss_kib / 1024:>8.1f}MB {g:>+7.1%} "
            f"{a.sockets:>4}/{b.sockets:<4} {a.established:>5}/{b.established:<4}  {verdict}"
        )
    print(f"\nsteady load: sent {load.sent}, ok {load.ok}, failed/dropped {load.failed}")
    print(
        f"fuzz: {fuzz_stats.sent} requests, by class {dict(sorted(fuzz_stats.classes.items()))}, "
        f"transport/generation errors {dict(fuzz_stats.transport_errors)}"
    )
    five = fuzz_stats.server_errors
    print(f"5xx: {len(five)}")
    for line in five[:50]:
        print(f"  {line}")
    if five:
        failures.append(f"{len(five)} server errors")
    behind = sum(lag.values())
    backlog = {n: m["ooda_outbox_backlog"] for n, m in metrics.items()}
    gauge_lag = {n: m["ooda_consumer_lag"] for n, m in metrics.items()}
    print(
        f"quiesced after {waited:.0f}s: consumer groups behind the end {behind} ({len(lag)} "
        f"groups: {lag})"
    )
    print(f"ooda_consumer_lag per service {gauge_lag}; ooda_outbox_backlog per service {backlog}")
    print(f"dlq records {dlq}; about the loaded app: {len(from_load)}")
    for line in from_load[:20]:
        print(f"  {line}")
    if behind or any(gauge_lag.values()) or any(backlog.values()):
        failures.append("unconsumed or unpublished events")
    if from_load:
        failures.append(f"{len(from_load)} dead-lettered records from the load")
    if fuzz_stats.sent == 0 or load.ok == 0:
        failures.append("no traffic")
    verdict = "FAIL " + "; ".join(failures) if failures else "pass"
    print(f"total {time.time() - started:.0f}s; verdict: {verdict}")
    return 1 if failures else 0


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--rate", type=float, default=15.0, help="steady load, req/s (2 x 20 served)")
    p.add_argument("--interval", type=float, default=2.0, help="monitor scrape interval, s")
    p.add_argument("--warmup", type=float, default=60.0, help="seconds before the first sample")
    p.add_argument("--fuzz-rps", type=float, default=10.0, help="fuzz requests per second, max")
    p.add_argument("--fuzz-max", type=int, default=100_000, help="fuzz requests, max")
    p.add_argument("--quiesce", type=float, default=120.0, help="seconds to wait for lag 0")
    p.add_argument("--seed", type=int, default=20261208)
    return p.parse_args()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
