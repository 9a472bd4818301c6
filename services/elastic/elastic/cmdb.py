"""What elastic reads from the CMDB (docs/interfaces.md), behind a Protocol so tests can fake it."""

from __future__ import annotations

from typing import Any, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Resources(_Tolerant):
    """CPU and memory one instance reserves."""

    cpu_millis: int = Field(500, gt=0)
    memory_mib: int = Field(512, gt=0)


class Replicas(_Tolerant):
    """The declared replica bounds."""

    min: int = Field(ge=0)
    max: int = Field(gt=0)
    desired: int = Field(0, ge=0)


class Scaling(_Tolerant):
    """The declared scaling hints."""

    target_utilisation: float = Field(0.6, gt=0, le=1)
    policy: str = "predictive"


class SpecBudget(_Tolerant):
    """The declared budget of the application."""

    replica_hours: float = Field(ge=0)
    period: str = "month"


class AppSpec(_Tolerant):
    """The part of an ApplicationSpec elastic uses."""

    revision: int = 0
    replicas: Replicas
    resources: Resources = Resources()
    scaling: Scaling = Scaling()
    budget: SpecBudget | None = None


class Allocated(_Tolerant):
    """What live instances already reserve on a host."""

    cpu_millis: int = Field(0, ge=0)
    memory_mib: int = Field(0, ge=0)


class Host(_Tolerant):
    """A host as the CMDB lists it."""

    id: str
    zone_id: str
    pool_id: str
    cpu_millis: int = Field(ge=0)
    memory_mib: int = Field(ge=0)
    status: str = "up"
    allocated: Allocated = Allocated()


class CmdbUnavailable(Exception):
    """The CMDB did not answer (retry later)."""


class CmdbClient(Protocol):
    """The CMDB reads elastic needs."""

    async def owner_team(self, app: str) -> str | None:
        """The application's owner team, or None when the CMDB does not know the application."""
        ...

    async def spec(self, app: str) -> AppSpec | None:
        """The application's current spec, or None when it has none."""
        ...

    async def team_known(self, team: str) -> bool:
        """Whether the CMDB has an application owned by `team` (teams exist through their apps)."""
        ...

    async def hosts(self, status: str | None = "up") -> list[Host]:
        """Every host with the given status (every host when None)."""
        ...


class HttpCmdbClient:
    """The CMDB over HTTP."""

    def __init__(self, base_url: str, timeout_seconds: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout_seconds

    async def _get(self, path: str, params: dict[str, str] | None = None) -> Any | None:
        try:
            async with httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout) as client:
                response = await client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise CmdbUnavailable(f"CMDB at {self.base_url} unreachable: {exc}") from exc
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise CmdbUnavailable(f"CMDB GET {path} answered {response.status_code}")
        return response.json()

    async def owner_team(self, app: str) -> str | None:
        found = await self._get(f"/v1/apps/{app}")
        return None if found is None else str(found["owner_team"])

    async def team_known(self, team: str) -> bool:
        page = await self._get("/v1/apps", {"owner_team": team, "limit": "1"})
        return bool(page and page.get("items"))

    async def spec(self, app: str) -> AppSpec | None:
        found = await self._get(f"/v1/apps/{app}/spec")
        return None if found is None else AppSpec.model_validate(found)

    async def hosts(self, status: str | None = "up") -> list[Host]:
        hosts: list[Host] = []
        base = {} if status is None else {"status": status}
        params = dict(base)
        while True:
            page = await self._get("/v1/hosts", params)
            if page is None:
                return hosts
            hosts += [Host.model_validate(item) for item in page.get("items", [])]
            if not page.get("next"):
                return hosts
            params = {**base, "cursor": str(page["next"])}


class InMemoryCmdb:
    """A CMDB held in memory: for tests and demos without a running CMDB."""

    def __init__(
        self,
        teams: dict[str, str] | None = None,
        specs: dict[str, AppSpec] | None = None,
        hosts: list[Host] | None = None,
    ) -> None:
        self.teams = dict(teams or {})
        self.specs = dict(specs or {})
        self.host_list = list(hosts or [])

    async def owner_team(self, app: str) -> str | None:
        return self.teams.get(app)

    async def team_known(self, team: str) -> bool:
        return team in self.teams.values()

    async def spec(self, app: str) -> AppSpec | None:
        return self.specs.get(app)

    async def hosts(self, status: str | None = "up") -> list[Host]:
        return [h for h in self.host_list if status is None or h.status == status]
