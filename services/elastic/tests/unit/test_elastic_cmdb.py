"""The CMDB reads elastic makes: the in-memory CMDB and the HTTP client pass the same contract.

The HTTP client talks to a tiny real HTTP server in this process that answers as the CMDB does
(docs/interfaces.md), with paged host lists.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, HTTPException

from elastic.cmdb import AppSpec, CmdbClient, CmdbUnavailable, Host, HttpCmdbClient, InMemoryCmdb
from ooda.testing import free_port

pytestmark = pytest.mark.unit

SPEC: dict[str, Any] = {
    "kind": "application_spec",
    "id": "web",
    "revision": 4,
    "artifact": "sha256:abc",
    "version": "1.2.0",
    "replicas": {"min": 2, "max": 8, "desired": 3},
    "resources": {"cpu_millis": 250, "memory_mib": 256},
    "health_check": {"path": "/readyz", "timeout_seconds": 2.0},
    "slo": {"availability": 0.999},
    "scaling": {"target_utilisation": 0.7, "policy": "predictive"},
    "budget": {"replica_hours": 1000, "period": "week"},
}
HOSTS: list[dict[str, Any]] = [
    {
        "kind": "host",
        "id": f"host-{n}",
        "zone_id": f"zone-{n % 2}",
        "pool_id": "general",
        "address": f"10.0.0.{n}",
        "cpu_millis": 4000,
        "memory_mib": 8192,
        "status": "down" if n == 3 else "up",
        "allocated": {"cpu_millis": 500 * n, "memory_mib": 512 * n},
    }
    for n in range(1, 6)
]


class CmdbClientContract:
    """What every CmdbClient must do; subclasses say how to build one over the data above."""

    def subject(self) -> Any:
        raise NotImplementedError

    async def test_an_applications_owner_team_and_spec_are_read(self) -> None:
        async with self.subject() as cmdb:
            assert await cmdb.owner_team("web") == "payments"
            spec = await cmdb.spec("web")
        assert spec is not None
        assert (spec.replicas.min, spec.replicas.max) == (2, 8)
        assert spec.resources.cpu_millis == 250
        assert spec.scaling.target_utilisation == 0.7
        assert spec.budget is not None
        assert spec.budget.period == "week"

    async def test_an_unknown_application_has_no_team_and_no_spec(self) -> None:
        async with self.subject() as cmdb:
            assert await cmdb.owner_team("ghost") is None
            assert await cmdb.spec("ghost") is None

    async def test_a_team_is_known_through_the_applications_it_owns(self) -> None:
        async with self.subject() as cmdb:
            assert await cmdb.team_known("payments") is True
            assert await cmdb.team_known("nobody") is False

    async def test_hosts_are_filtered_by_status(self) -> None:
        async with self.subject() as cmdb:
            up = await cmdb.hosts()
            every = await cmdb.hosts(status=None)
        assert [h.id for h in up] == ["host-1", "host-2", "host-4", "host-5"]
        assert len(every) == 5
        assert up[1].allocated.cpu_millis == 1000


class TestInMemoryCmdb(CmdbClientContract):
    @asynccontextmanager
    async def subject(self) -> AsyncIterator[CmdbClient]:
        yield InMemoryCmdb(
            teams={"web": "payments"},
            specs={"web": AppSpec.model_validate(SPEC)},
            hosts=[Host.model_validate(h) for h in HOSTS],
        )


def fake_cmdb_api() -> FastAPI:
    api = FastAPI()

    @api.get("/v1/apps")
    async def applications(owner_team: str | None = None, limit: int = 100) -> dict[str, Any]:
        apps = [{"kind": "application", "id": "web", "owner_team": "payments"}]
        return {"items": [a for a in apps if owner_team in (None, a["owner_team"])][:limit]}

    @api.get("/v1/apps/{app}")
    async def application(app: str) -> dict[str, Any]:
        if app != "web":
            raise HTTPException(404, "no such application")
        return {"kind": "application", "id": app, "owner_team": "payments", "tier": "standard"}

    @api.get("/v1/apps/{app}/spec")
    async def spec(app: str) -> dict[str, Any]:
        if app != "web":
            raise HTTPException(404, "no such application")
        return SPEC

    @api.get("/v1/hosts")
    async def hosts(status: str | None = None, cursor: int = 0) -> dict[str, Any]:
        matching = [h for h in HOSTS if status is None or h["status"] == status]
        page = matching[cursor : cursor + 2]
        more = cursor + 2 < len(matching)
        return {"items": page, "next": str(cursor + 2) if more else None}

    return api


class TestHttpCmdbClient(CmdbClientContract):
    @asynccontextmanager
    async def subject(self) -> AsyncIterator[CmdbClient]:
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(fake_cmdb_api(), host="127.0.0.1", port=port, log_level="warning")
        )
        task = asyncio.create_task(server.serve())
        try:
            async with asyncio.timeout(10):
                while not server.started:
                    await asyncio.sleep(0.02)
            yield HttpCmdbClient(f"http://127.0.0.1:{port}/", timeout_seconds=2)
        finally:
            server.should_exit = True
            await task

    async def test_an_unreachable_cmdb_raises_cmdb_unavailable(self) -> None:
        cmdb = HttpCmdbClient(f"http://127.0.0.1:{free_port()}", timeout_seconds=1)
        with pytest.raises(CmdbUnavailable, match="unreachable"):
            await cmdb.hosts()
