"""Benchmark of the CMDB at scale: seed 1,000,000 items, then read latency under concurrent load.

The service runs as a real process (`ooda-cmdb`, as `make up` runs it) on a fresh database and a
fresh topic prefix. Seeding:

- region, zones, pool, hosts and applications, then the first `--import-instances` instances
  (20,000 by default) go through `POST /v1/import` in chunks (the real validation,
  authorisation, change-set, revision and cmdb-changed path); each rate is printed;
- the other instances (the bulk of the items) are built with the same domain model and store
  helpers (`Instance` -> `snapshot` -> `owner_app`) and written into the `items` table with COPY,
  every index maintained as it goes: the import writes a revision per item and a cmdb-changed
  event per application of each chunk, some 2,000 instances/s here, so a million of them would
  take minutes. These rows get no revision (their history is not benchmarked).

A tenth of the instances are live (`ready`), the rest `stopped`: a zone's blast radius hits the
~1,000 applications with live instances there and reads their ~9,700 live instances (of 96,998
live, 969,988 in all) at the default size.

A SEPARATE process (multiprocessing, spawn) then runs an asyncio + httpx load loop with N
concurrent clients for a fixed time per endpoint: `/healthz` (the bare baseline, a constant),
get by id, a list page of 100 by label selector, search, and a zone blast radius. It prints
p50/p99 latency and requests/s, with ratios to the bare endpoint.

    .venv/bin/python bench/cmdb.py [--items 1000000] [--clients 2,16] [--seconds 10]
        [--import-instances 20000] [--keep-database]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# This file is named like the service package: keep its directory off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import asyncpg  # noqa: E402
import httpx  # noqa: E402

from cmdb.domain import Instance  # noqa: E402
from cmdb.store import owner_app, snapshot  # noqa: E402
from ooda.auth import issue_token  # noqa: E402
from ooda.testing import (  # noqa: E402
    ServiceProcess,
    create_database,
    create_topics,
    delete_topics,
    drop_database,
    free_port,
    kafka_env,
    resolve_infra,
    unique,
)

ZONES = 10
CELLS = 1000
"""Label `cell` takes this many values: a list by `cell=<n>` matches ~items/CELLS items."""
SLOW = ("search", "blast")
SLOW_CLIENTS = 2
"""Clients for search and blast radius (each request holds the server for a long time)."""
ROUNDS = 4
"""Turns the quick endpoints take, each `--seconds / ROUNDS` long."""
WARMUP_SECONDS = 1.0
IMPORT_CHUNK = 5000
COPY_CHUNK = 50_000


def shape(items: int) -> dict[str, int]:
    """How many of each kind make up `items` (hosts 2%, applications 1%, the rest instances)."""
    hosts = max(ZONES, items // 50)
    apps = max(1, items // 100)
    instances = items - hosts - apps - ZONES - 2
    return {"hosts": hosts, "apps": apps, "instances": instances, "live": instances // 10}


def infra_rows(n: dict[str, int]) -> list[dict[str, Any]]:
    """Region, zones, pool, hosts and applications, as import rows (the import takes no specs)."""
    rows: list[dict[str, Any]] = [{"kind": "region", "id": "r1"}]
    rows += [{"kind": "zone", "id": f"z{z}", "region_id": "r1"} for z in range(ZONES)]
    rows.append({"kind": "pool", "id": "p1"})
    rows += [
        {
            "kind": "host",
            "id": f"host-{h:07d}",
            "zone_id": f"z{h % ZONES}",
            "pool_id": "p1",
            "address": f"10.{h >> 16 & 255}.{h >> 8 & 255}.{h & 255}",
            "cpu_millis": 16000,
            "memory_mib": 65536,
            "labels": {"rack": f"rack-{h % 500}"},
        }
        for h in range(n["hosts"])
    ]
    for a in range(n["apps"]):
        app = f"app-{a:06d}"
        rows.append(
            {
                "kind": "application",
                "id": app,
                "owner_team": f"team-{a % 50}",
                "labels": {"team": f"team-{a % 50}"},
            }
        )
    return rows


async def seed_import(url: str, token: str, rows: list[dict[str, Any]]) -> float:
    """Import `rows` over HTTP in chunks (zones before their hosts); the seconds it took."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=600.0) as client:
        for start in range(0, len(rows), IMPORT_CHUNK):
            body = "\n".join(json.dumps(r) for r in rows[start : start + IMPORT_CHUNK])
            response = await client.post("/v1/import", content=body, headers=headers)
            result = response.json()
            if response.status_code != 200 or not result["applied"]:
                raise RuntimeError(f"import failed: {response.status_code} {str(result)[:500]}")
    return time.perf_counter() - started


def instance_data(n: dict[str, int], start: int, stop: int, at: datetime) -> list[dict[str, Any]]:
    """Snapshots of instances [start, stop), as the store keeps them (and the import takes them)."""
    template = snapshot(
        Instance(
            id="i-0",
            app_id="app-000000",
            version="1.0.0",
            host_id="host-0000000",
            zone_id="z0",
            endpoint="10.0.0.0:8000",
            status="ready",
            started_at=at,
            labels={"app": "app-000000", "cell": "0"},
        )
    )
    found = []
    live = n["live"]
    for i in range(start, stop):
        host = i % n["hosts"]
        app = f"app-{i % n['apps']:06d}"
        data = dict(template)
        data.update(
            id=f"i-{i:08d}",
            app_id=app,
            host_id=f"host-{host:07d}",
            zone_id=f"z{host % ZONES}",
            endpoint=f"10.{host >> 16 & 255}.{host >> 8 & 255}.{host & 255}:{8000 + i % 50000}",
            status="ready" if i < live else "stopped",
            labels={"app": app, "cell": str(i % CELLS)},
        )
        if i == start:  # the shortcut must give exactly what the model would store
            assert snapshot(Instance.model_validate(data)) == data, data
        found.append(data)
    return found


def instance_rows(n: dict[str, int], start: int, stop: int, at: datetime) -> list[tuple[Any, ...]]:
    """Rows of the items table for instances [start, stop), built by the store's own helpers."""
    return [
        (
            "instance",
            data["id"],
            json.dumps(data),
            json.dumps(data["labels"]),
            owner_app(data),
            1,
            False,
            at,
        )
        for data in instance_data(n, start, stop, at)
    ]


async def seed_copy(dsn: str, n: dict[str, int], first: int) -> float:
    """COPY instances `first`.. into the items table; the seconds it took (VACUUM ANALYZE too)."""
    at = datetime.now(UTC)
    conn = await asyncpg.connect(dsn)
    started = time.perf_counter()
    try:
        for start in range(first, n["instances"], COPY_CHUNK):
            stop = min(start + COPY_CHUNK, n["instances"])
            await conn.copy_records_to_table(
                "items",
                records=instance_rows(n, start, stop, at),
                columns=[
                    "kind",
                    "id",
                    "data",
                    "labels",
                    "app_id",
                    "version",
                    "deleted",
                    "updated_at",
                ],
            )
        # What autovacuum would soon do after so many inserts: merge the GIN pending lists (a
        # COPY leaves up to gin_pending_list_limit of each), mark the label index's pages all
        # visible (for index-only scans) and analyze.
        await conn.execute("VACUUM ANALYZE items, item_labels")
    finally:
        await conn.close()
    return time.perf_counter() - started


# --- the load process -----------------------------------------------------------------------


def targets(n: dict[str, int], rng: random.Random) -> dict[str, Any]:
    """Per endpoint, a function giving the next request path."""
    return {
        "healthz (bare)": lambda: "/healthz",
        "get instance by id": lambda: f"/v1/instances/i-{rng.randrange(n['instances']):08d}",
        "list 100 by selector": lambda: f"/v1/instances?selector=cell%3D{rng.randrange(CELLS)}",
        "search (all kinds)": lambda: f"/v1/search?q=host-{rng.randrange(n['hosts']):07d}",
        "blast radius (zone)": lambda: f"/v1/blast-radius?zone=z{rng.randrange(ZONES)}",
    }


@dataclass
class Sample:
    """What one endpoint's clients saw over one or more measured windows."""

    clients: int
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    wall: float = 0.0

    def summary(self) -> dict[str, Any]:
        latencies = sorted(self.latencies)
        count = len(latencies)
        nan = float("nan")
        return {
            "clients": self.clients,
            "count": count,
            "errors": self.errors,
            "rps": count / self.wall if self.wall > 0 else 0.0,
            "p50": latencies[count // 2] * 1000 if count else nan,
            "p99": latencies[min(count - 1, int(count * 0.99))] * 1000 if count else nan,
            "mean": statistics.fmean(latencies) * 1000 if count else nan,
        }


async def _measure(url: str, path_of: Any, sample: Sample, seconds: float, warmup: float) -> None:
    """Run `sample.clients` clients for `warmup + seconds`; add the measured part to `sample`."""
    clients = sample.clients
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=300.0, limits=limits) as client:
        loop = asyncio.get_running_loop()
        measure_from = loop.time() + warmup
        deadline = measure_from + seconds

        async def worker() -> None:
            while (now := loop.time()) < deadline:
                response = await client.get(path_of())
                took = loop.time() - now
                if now >= measure_from:
                    if response.status_code == 200:
                        sample.latencies.append(took)
                    else:
                        sample.errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        sample.wall += time.perf_counter() - started - warmup


def load_process(
    url: str, n: dict[str, int], concurrency: list[int], seconds: float, out: Any
) -> None:  # pragma: no cover - runs in the child
    """The load generator (a separate process): every endpoint in turn, results on `out`.

    The quick endpoints (the bare one, get, list) take turns in ROUNDS short windows, so that a
    stretch of noise from elsewhere on a shared machine falls on all of them alike rather than on
    one; the ratios to the bare endpoint compare the same stretch of time.
    """
    rng = random.Random(7)
    rounds = []
    for clients in concurrency:
        samples: dict[str, Sample] = {}
        quick = {k: v for k, v in targets(n, rng).items() if not k.startswith(SLOW)}
        for _ in range(ROUNDS):
            for name, path_of in quick.items():
                sample = samples.setdefault(name, Sample(clients))
                asyncio.run(_measure(url, path_of, sample, seconds / ROUNDS, WARMUP_SECONDS))
        for name, path_of in targets(n, rng).items():
            if name.startswith(SLOW):
                # The heavy queries hold the server's CPU for long: fewer clients, or one round
                # of them would outlast the window many times over.
                sample = samples.setdefault(name, Sample(min(clients, SLOW_CLIENTS)))
                asyncio.run(_measure(url, path_of, sample, seconds, 0))
        rounds.append((clients, {name: s.summary() for name, s in samples.items()}))
    out.put(rounds)


def print_table(results: dict[str, dict[str, Any]]) -> None:
    bare = results["healthz (bare)"]
    print(
        f"{'endpoint':<24}{'clients':>8}{'requests':>10}{'err':>5}{'req/s':>10}{'p50 ms':>10}"
        f"{'p99 ms':>10}{'req/s /bare':>13}{'p50 /bare':>11}{'p99 /bare':>11}"
    )
    for name, r in results.items():
        print(
            f"{name:<24}{r['clients']:>8}{r['count']:>10}{r['errors']:>5}{r['rps']:>10.1f}"
            f"{r['p50']:>10.2f}{r['p99']:>10.2f}{r['rps'] / bare['rps']:>13.3f}"
            f"{r['p50'] / bare['p50']:>11.1f}{r['p99'] / bare['p99']:>11.1f}"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000, help="items to seed")
    parser.add_argument(
        "--clients",
        default="2,16",
        help="concurrent clients, comma-separated for several rounds (search and blast: at most 2)",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per endpoint")
    parser.add_argument(
        "--import-instances",
        type=int,
        default=20_000,
        help="instances seeded through POST /v1/import (the rest with COPY)",
    )
    parser.add_argument(
        "--keep-database",
        action="store_true",
        help="leave the seeded database in place (to study its query plans); dropped by default",
    )
    args = parser.parse_args()
    n = shape(args.items)
    concurrency = [int(c) for c in args.clients.split(",")]
    infra = resolve_infra()
    prefix = unique("bench").replace("-", "") + "."
    await create_topics(infra, prefix)
    database_url = await create_database(infra, "cmdb")
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="bench-cmdb-")) / "cmdb.log"
    env = dict(os.environ) | {
        **kafka_env(infra.kafka("cmdb")),
        "OODA_AUTH_SECRET": infra.auth_secret,
        "OODA_TOPIC_PREFIX": prefix,
        "OODA_LOG_LEVEL": "WARNING",
        "CMDB_DATABASE_URL": database_url,
        "CMDB_PORT": str(port),
    }
    service = ServiceProcess("cmdb", env, port, log)
    service.start()
    try:
        await service.wait_ready()
        token = issue_token(infra.auth_secret, "bench", ["admin"], audience="cmdb")
        rows = infra_rows(n)
        print(
            f"seeding {args.items:,} items: {n['hosts']:,} hosts, {n['apps']:,} applications, "
            f"{n['instances']:,} instances ({n['live']:,} live), {ZONES} zones",
            flush=True,
        )
        took = await seed_import(service.url, token, rows)
        print(
            f"  POST /v1/import ({IMPORT_CHUNK:,}-row chunks): {len(rows):,} infrastructure and"
            f" application rows in {took:.1f} s = {len(rows) / took:,.0f} items/s",
            flush=True,
        )
        imported = min(args.import_instances, n["instances"])
        instances = instance_data(n, 0, imported, datetime.now(UTC))
        took_instances = await seed_import(service.url, token, instances)
        if imported:
            print(
                f"  POST /v1/import ({IMPORT_CHUNK:,}-row chunks): {imported:,} instances in"
                f" {took_instances:.1f} s = {imported / took_instances:,.0f} items/s",
                flush=True,
            )
        dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
        took_copy = await seed_copy(dsn, n, imported)
        copied = n["instances"] - imported
        print(
            f"  COPY via store helpers: {copied:,} instances in {took_copy:.1f} s"
            f" = {copied / took_copy:,.0f} items/s",
            flush=True,
        )
        total = len(rows) + n["instances"]
        seconds = took + took_instances + took_copy
        print(f"  total: {total:,} items in {seconds:.1f} s = {total / seconds:,.0f} items/s")
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        loader = ctx.Process(
            target=load_process, args=(service.url, n, concurrency, args.seconds, out)
        )
        print(
            f"load from a separate process: {args.clients} concurrent clients (at most "
            f"{SLOW_CLIENTS} for search and blast), {args.seconds:g} s per endpoint",
            flush=True,
        )
        loader.start()
        rounds = await asyncio.get_running_loop().run_in_executor(None, out.get)
        loader.join()
        for clients, results in rounds:
            print(f"\n{clients} concurrent clients:")
            print_table(results)
    finally:
        service.stop()
        await delete_topics(infra, prefix)
        if args.keep_database:
            print(f"(service stopped; its database: {database_url.rsplit('/', 1)[1]}; log: {log})")
        else:
            await drop_database(infra, database_url)
            print(f"(service stopped, its database dropped; its log: {log})")


if __name__ == "__main__":
    asyncio.run(main())
