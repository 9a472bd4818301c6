"""Capacity per pool and zone as Prometheus gauges: hosts, their CPU and memory, and what is taken.

A task aggregates the stored hosts, live instances and specs every few seconds and `/metrics`
serves that snapshot, so the values are the database's whatever the process has seen.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from cmdb.domain import ResourceRequest
from ooda.metrics import StoredStateMetrics
from ooda.service import Runtime

_HOSTS = text(
    """
    SELECT data ->> 'pool_id' AS pool, data ->> 'zone_id' AS zone, data ->> 'status' AS status,
           count(*) AS n,
           sum((data ->> 'cpu_millis')::bigint) AS cpu,
           sum((data ->> 'memory_mib')::bigint) AS mem
    FROM items WHERE kind = 'host' AND NOT deleted
    GROUP BY 1, 2, 3
    """
)
# Live instances per pool and zone of their host, with what each one's application spec requests
# (the default request when the application has no spec). The WHERE clause is the live-instance
# predicate of the partial indexes (`store.LIVE_INSTANCE`), on the alias.
_TAKEN = text(
    """
    SELECT h.data ->> 'pool_id' AS pool, h.data ->> 'zone_id' AS zone, count(*) AS n,
           sum(coalesce((s.data -> 'resources' ->> 'cpu_millis')::bigint, :cpu)) AS cpu,
           sum(coalesce((s.data -> 'resources' ->> 'memory_mib')::bigint, :mem)) AS mem
    FROM items i
    JOIN items h ON h.kind = 'host' AND h.id = i.data ->> 'host_id' AND NOT h.deleted
    LEFT JOIN items s
      ON s.kind = 'application_spec' AND s.id = i.app_id AND NOT s.deleted
    WHERE i.kind = 'instance' AND NOT i.deleted AND (i.data ->> 'status') IN ('starting', 'ready')
    GROUP BY 1, 2
    """
)


async def pool_capacity(session: AsyncSession) -> list[Metric]:
    """Hosts, capacity and allocation per pool and zone, aggregated in the database (a scrape
    of a CMDB with a million items costs two grouped queries, not a pass over its rows)."""
    default = ResourceRequest()
    hosts = (await session.execute(_HOSTS)).all()
    taken = (
        await session.execute(_TAKEN, {"cpu": default.cpu_millis, "mem": default.memory_mib})
    ).all()
    return _families(hosts, taken)


def _families(hosts: Any, taken_rows: Any) -> list[Metric]:
    labels = ["pool", "zone"]
    count = GaugeMetricFamily(
        "ooda_pool_hosts", "Hosts per pool and zone by status", labels=[*labels, "status"]
    )
    cpu = GaugeMetricFamily(
        "ooda_pool_cpu_millis", "CPU of the hosts that are up (schedulable)", labels=labels
    )
    mem = GaugeMetricFamily(
        "ooda_pool_memory_mib", "Memory of the hosts that are up (schedulable)", labels=labels
    )
    taken_cpu = GaugeMetricFamily(
        "ooda_pool_allocated_cpu_millis", "CPU live instances reserve", labels=labels
    )
    taken_mem = GaugeMetricFamily(
        "ooda_pool_allocated_memory_mib", "Memory live instances reserve", labels=labels
    )
    instances = GaugeMetricFamily("ooda_pool_instances", "Live instances", labels=labels)
    up: dict[tuple[str, str], tuple[int, int]] = {}
    for h in sorted(hosts, key=lambda r: (r.pool, r.zone, r.status)):
        count.add_metric([h.pool, h.zone, h.status], h.n)
        c, m = up.get((h.pool, h.zone), (0, 0))
        if h.status == "up":
            c, m = c + int(h.cpu or 0), m + int(h.mem or 0)
        up[(h.pool, h.zone)] = (c, m)
    taken = dict.fromkeys(up, (0, 0, 0)) | {
        (r.pool, r.zone): (int(r.cpu), int(r.mem), int(r.n)) for r in taken_rows
    }
    for (pool, zone), (c, m) in sorted(up.items()):
        cpu.add_metric([pool, zone], c)
        mem.add_metric([pool, zone], m)
    for (pool, zone), (c, m, n) in sorted(taken.items()):
        taken_cpu.add_metric([pool, zone], c)
        taken_mem.add_metric([pool, zone], m)
        instances.add_metric([pool, zone], n)
    return [count, cpu, mem, taken_cpu, taken_mem, instances]


async def read_pool_capacity(rt: Runtime) -> list[Metric]:
    """Aggregate the stored items into metric families."""
    async with rt.sessions() as session, session.begin():
        return await pool_capacity(session)


POOLS = StoredStateMetrics("pool capacity", read_pool_capacity)
REGISTRY.register(POOLS)


async def start_refresh(rt: Runtime) -> None:
    """The `on_start` hook: run the refresh task with the service's runtime."""
    await POOLS.start(rt)
