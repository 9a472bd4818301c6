"""What the decision center reads from the CMDB: the scaling hints of an application's spec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import httpx


@dataclass(frozen=True)
class SpecHints:
    """The parts of a declared spec that shape decisions."""

    policy: str | None = None
    min_replicas: int = 1
    max_replicas: int = 100_000
    target_utilisation: float = 0.7
    latency_p99_ms: float | None = None
    capacity_rps: float | None = None
    scale_in_window_s: float | None = None
    season_s: float | None = None


class SpecsUnavailable(Exception):
    """The CMDB did not say (unreachable, timed out, or failing): ask again later."""


class SpecSource(Protocol):
    """Where specs come from (the CMDB over HTTP, or a fake in tests)."""

    async def hints(self, app: str) -> SpecHints | None:
        """The app's hints, or None when it has no spec; SpecsUnavailable when the CMDB cannot
        say."""


def hints_from_spec(spec: dict[str, Any]) -> SpecHints:
    """Read the hints out of a CMDB ApplicationSpec document."""
    replicas = spec.get("replicas") or {}
    scaling = spec.get("scaling") or {}
    slo = spec.get("slo") or {}
    capacity = (spec.get("attributes") or {}).get("capacity_rps")
    return SpecHints(
        policy=scaling.get("policy"),
        min_replicas=int(replicas.get("min", 1)),
        max_replicas=int(replicas.get("max", 100_000)),
        target_utilisation=float(scaling.get("target_utilisation", 0.7)),
        latency_p99_ms=slo.get("latency_p99_ms"),
        capacity_rps=float(capacity) if capacity else None,
        scale_in_window_s=_seconds(scaling.get("scale_in_window_s")),
        season_s=_seconds(scaling.get("season_s")),
    )


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value)


class HttpSpecSource:
    """Specs from the CMDB's `GET /v1/apps/{app}/spec`, over one pool of kept-alive connections."""

    def __init__(self, base_url: str, timeout_s: float = 3.0) -> None:
        self.client = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout_s)

    async def hints(self, app: str) -> SpecHints | None:
        """The app's hints; None when the CMDB has no spec for it."""
        try:
            response = await self.client.get(f"/v1/apps/{app}/spec")
        except httpx.HTTPError as exc:
            raise SpecsUnavailable(f"CMDB at {self.client.base_url}: {exc!r}") from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise SpecsUnavailable(f"CMDB answered {response.status_code} for the spec of {app}")
        return hints_from_spec(response.json())

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()
