"""What the pipeline reads from the CMDB (docs/interfaces.md), behind a small protocol.

The executor asks for an application's owner and declared spec and for the hosts it may place
instances on; tests pass a fake object or a tiny real HTTP server instead of the CMDB.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from pipeline.domain import Host, Resources


class UnknownApplication(LookupError):
    """The CMDB does not know the application (or has no declared spec for it)."""


@dataclass(frozen=True)
class AppSpec:
    """The parts of an application's declared spec that a rollout needs."""

    app: str
    owner_team: str | None
    revision: int | None
    version: str | None
    artifact: str | None
    replicas: int | None
    resources: Resources
    health_path: str
    health_timeout_s: float | None
    capacity_rps: float | None = None
    slo_availability: float | None = None
    slo_latency_p99_ms: float | None = None


class Cmdb(Protocol):
    """The CMDB reads the pipeline depends on."""

    async def owner(self, app: str) -> str | None:
        """The team that owns `app`; raise UnknownApplication when the CMDB does not know it."""
        ...

    async def spec(self, app: str) -> AppSpec:
        """The application's declared spec; raise UnknownApplication when it has none."""
        ...

    async def hosts(self) -> list[Host]:
        """Hosts that are up, with the room each has left."""
        ...


def host_from_json(item: dict[str, Any]) -> Host:
    """A planning Host from a CMDB host item (capacity minus what live instances use)."""
    allocated = item.get("allocated") or {}
    cpu = int(item.get("cpu_millis") or 0) - int(allocated.get("cpu_millis") or 0)
    memory = int(item.get("memory_mib") or 0) - int(allocated.get("memory_mib") or 0)
    return Host(
        id=str(item["id"]),
        zone=str(item.get("zone_id") or item.get("zone") or "default"),
        pool=str(item.get("pool_id") or item.get("pool") or "default"),
        free=Resources(cpu=max(0, cpu) / 1000, memory_mb=max(0, memory)),
    )


def spec_from_json(app: str, owner: str | None, item: dict[str, Any]) -> AppSpec:
    """An AppSpec from the CMDB's `GET /v1/apps/{app}/spec` answer (tolerant of extra fields)."""
    resources = item.get("resources") or {}
    replicas = item.get("replicas") or {}
    health = item.get("health_check") or {}
    attributes = item.get("attributes") or {}
    capacity = attributes.get("capacity_rps") if isinstance(attributes, dict) else None
    slo = item.get("slo") or {}
    availability = slo.get("availability") if isinstance(slo, dict) else None
    latency = slo.get("latency_p99_ms") if isinstance(slo, dict) else None
    return AppSpec(
        app=app,
        owner_team=owner,
        revision=item.get("revision"),
        version=item.get("version"),
        artifact=item.get("artifact"),
        replicas=replicas.get("desired") if isinstance(replicas, dict) else None,
        resources=Resources(
            cpu=int(resources.get("cpu_millis") or 0) / 1000,
            memory_mb=int(resources.get("memory_mib") or 0),
        ),
        health_path=str(health.get("path") or "/readyz"),
        health_timeout_s=health.get("timeout_seconds"),
        capacity_rps=float(capacity) if capacity is not None else None,
        slo_availability=float(availability) if availability is not None else None,
        slo_latency_p99_ms=float(latency) if latency is not None else None,
    )


class HttpCmdb:
    """The CMDB over its HTTP read API."""

    def __init__(self, base_url: str, timeout_s: float = 5.0) -> None:
        self.client = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout_s)

    async def close(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()

    async def _get(self, path: str, **params: str) -> Any:
        response = await self.client.get(path, params=params)
        if response.status_code == 404:
            raise UnknownApplication(f"the CMDB answers 404 for {path}")
        response.raise_for_status()
        return response.json()

    async def owner(self, app: str) -> str | None:
        found = await self._get(f"/v1/apps/{app}")
        owner = found.get("owner_team")
        return str(owner) if owner else None

    async def spec(self, app: str) -> AppSpec:
        owner = await self.owner(app)
        return spec_from_json(app, owner, await self._get(f"/v1/apps/{app}/spec"))

    async def hosts(self) -> list[Host]:
        hosts: list[Host] = []
        params = {"status": "up"}
        while True:
            page = await self._get("/v1/hosts", **params)
            items = page.get("items", []) if isinstance(page, dict) else page
            hosts.extend(host_from_json(item) for item in items)
            cursor = page.get("next") if isinstance(page, dict) else None
            if not cursor:
                return hosts
            params = {"status": "up", "cursor": str(cursor)}
