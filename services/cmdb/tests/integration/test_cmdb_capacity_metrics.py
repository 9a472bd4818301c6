"""Capacity per pool and zone as gauges, aggregated from the stored hosts, instances and specs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from cmdb.capacity_metrics import read_pool_capacity
from cmdb.config import Settings
from cmdb.main import MIGRATIONS, create_app
from ooda.metrics import StoredStateMetrics
from ooda.testing import Infra, RunningService, running_service, unique

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def svc(infra: Infra) -> AsyncIterator[RunningService]:
    async with running_service(infra, "cmdb", Settings, create_app, MIGRATIONS) as running:
        yield running


async def put(
    svc: RunningService, path: str, body: dict[str, Any], headers: dict[str, str]
) -> None:
    response = await svc.client.put(path, json=body, headers=headers)
    assert response.status_code in (200, 201), response.text


async def test_pool_gauges_count_up_hosts_and_what_live_instances_reserve(
    svc: RunningService,
) -> None:
    infra, pool, zone = svc.auth("ops", "infra"), unique("pool"), unique("zone")
    app, team = unique("app"), unique("team")
    owner = svc.auth("alice", f"team:{team}")
    await put(svc, "/v1/regions/r1", {}, infra)
    await put(svc, f"/v1/zones/{zone}", {"region_id": "r1"}, infra)
    await put(svc, f"/v1/pools/{pool}", {}, infra)
    for host, status in (("up", "up"), ("down", "down")):
        body = {"zone_id": zone, "pool_id": pool, "address": "127.0.0.1", "cpu_millis": 4000,
                "memory_mib": 8192, "status": status}  # fmt: skip
        await put(svc, f"/v1/hosts/{pool}-{host}", body, infra)
    await put(svc, f"/v1/apps/{app}", {"owner_team": team}, owner)
    for n, (host, status) in enumerate((("up", "ready"), ("up", "starting"), ("down", "ready"),
                                        ("up", "stopped"))):  # fmt: skip
        instance = {"app_id": app, "version": "1.0.0", "host_id": f"{pool}-{host}",
                    "zone_id": zone, "endpoint": f"127.0.0.1:{9000 + n}", "status": status,
                    "started_at": "2026-11-30T12:00:00+00:00"}  # fmt: skip
        await put(svc, f"/v1/instances/{app}-{n}", instance, owner)

    collector = StoredStateMetrics("pool capacity", read_pool_capacity)
    await collector.refresh(svc.app.state.runtime)
    got = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in collector.collect()
        for s in family.samples
        if s.labels.get("pool") == pool
    }
    at = frozenset({("pool", pool), ("zone", zone)})
    # Only the host that is up is schedulable; three live instances (the stopped one is not)
    # reserve the default request of 500 millicores and 512 MiB, whichever host they are on.
    assert got == {
        ("ooda_pool_hosts", at | {("status", "down")}): 1,
        ("ooda_pool_hosts", at | {("status", "up")}): 1,
        ("ooda_pool_cpu_millis", at): 4000,
        ("ooda_pool_memory_mib", at): 8192,
        ("ooda_pool_allocated_cpu_millis", at): 1500,
        ("ooda_pool_allocated_memory_mib", at): 1536,
        ("ooda_pool_instances", at): 3,
    }
