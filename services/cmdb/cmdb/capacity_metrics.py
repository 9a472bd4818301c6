"""Capacity per pool and zone as Prometheus gauges: hosts, their CPU and memory, and what is taken.

A task aggregates the stored hosts, live instances and specs every few seconds and `/metrics`
serves that snapshot, so the values are the database's whatever the process has seen.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from cmdb.domain import ResourceRequest
from cmdb.store import items
from ooda.metrics import StoredStateMetrics
from ooda.service import Runtime

LIVE = ("starting", "ready")  # instances that reserve their resources on a host


async def pool_capacity(session: AsyncSession) -> list[Metric]:
    """Hosts, capacity and allocation per pool and zone, from the live items."""
    host = items.c.data
    hosts = (
        await session.execute(
            select(
                items.c.id,
                host["pool_id"].astext.label("pool"),
                host["zone_id"].astext.label("zone"),
                host["status"].astext.label("status"),
                host["cpu_millis"].astext.label("cpu"),
                host["memory_mib"].astext.label("mem"),
            ).where(items.c.kind == "host", ~items.c.deleted)
        )
    ).all()
    # Live instances per host and application: one row per pair, not per instance.
    host_id, app_id = items.c.data["host_id"].astext, items.c.data["app_id"].astext
    placed = (
        await session.execute(
            select(host_id.label("host"), app_id.label("app"), func.count().label("n"))
            .where(
                items.c.kind == "instance",
                ~items.c.deleted,
                items.c.data["status"].astext.in_(LIVE),
            )
            .group_by(host_id, app_id)
        )
    ).all()
    apps = sorted({row.app for row in placed})
    resources = {
        row.id: ResourceRequest.model_validate(row.data.get("resources") or {})
        for row in await session.execute(
            select(items.c.id, items.c.data).where(
                items.c.kind == "application_spec", ~items.c.deleted, items.c.id.in_(apps)
            )
        )
    }
    where = {h.id: (h.pool, h.zone) for h in hosts}
    return _families(hosts, placed, resources, where)


def _families(
    hosts: Any, placed: Any, resources: dict[str, ResourceRequest], where: dict[str, Any]
) -> list[Metric]:
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
    by_status: dict[tuple[str, str, str], int] = {}
    up: dict[tuple[str, str], tuple[int, int]] = {}
    for h in hosts:
        key = (h.pool, h.zone)
        by_status[(*key, h.status)] = by_status.get((*key, h.status), 0) + 1
        c, m = up.get(key, (0, 0))
        up[key] = (c + int(h.cpu), m + int(h.mem)) if h.status == "up" else (c, m)
    taken: dict[tuple[str, str], tuple[int, int, int]] = dict.fromkeys(up, (0, 0, 0))
    for row in placed:
        if row.host not in where:
            continue  # an instance on a host the CMDB no longer lists
        key = where[row.host]
        request = resources.get(row.app, ResourceRequest())
        c, m, n = taken.get(key, (0, 0, 0))
        taken[key] = (c + request.cpu_millis * row.n, m + request.memory_mib * row.n, n + row.n)
    for (pool, zone, status), n in sorted(by_status.items()):
        count.add_metric([pool, zone, status], n)
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
