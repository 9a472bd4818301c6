"""Bring an application onto a running platform through its public APIs.

Used by the demo, the cross-service tests and the benchmarks: register zones, a pool and hosts
in the CMDB, build and upload the sample workload's artifact to the pipeline, declare the
application and its spec (which makes the CMDB request the deployment), and wait until it runs.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ooda.auth import SERVICES, issue_token

REPO = Path(__file__).resolve().parents[3]


@dataclass
class Platform:
    """Where the services of a running platform answer, and the secret that signs tokens."""

    auth_secret: str
    cmdb: str = "http://127.0.0.1:8001"
    pipeline: str = "http://127.0.0.1:8002"
    monitor: str = "http://127.0.0.1:8003"
    elastic: str = "http://127.0.0.1:8004"
    decision: str = "http://127.0.0.1:8005"

    def headers(self, subject: str = "ooda-scenario", *scopes: str) -> dict[str, str]:
        """Authorization header for `subject` (admin unless scopes are given), for every service."""
        scopes = scopes or ("admin",)
        token = issue_token(self.auth_secret, subject, list(scopes), 3600, audience=SERVICES)
        return {"Authorization": f"Bearer {token}"}


@dataclass
class AppPlan:
    """An application to bring up: owner, sizing, and what one instance can serve."""

    app: str
    team: str = "web"
    version: str = "1.0.0"
    min_replicas: int = 2
    max_replicas: int = 10
    desired: int = 2
    capacity_rps: float = 40.0
    latency_p99_ms: float = 100.0
    target_utilisation: float = 0.6
    policy: str = "predictive"
    scale_in_window_s: float | None = None
    season_s: float | None = None
    budget_replica_hours: float | None = None
    extra_spec: dict[str, Any] = field(default_factory=dict)


def build_workload(out: Path) -> Path:
    """Build the sample workload into a single-file zipapp at `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "zipapp", str(REPO / "examples" / "workload"), "-o", str(out)],
        check=True,
    )
    return out


async def _put(client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: Any) -> Any:
    response = await client.put(url, json=body, headers=headers)
    if response.status_code >= 400:
        raise RuntimeError(f"PUT {url}: {response.status_code} {response.text[:500]}")
    return response.json()


async def register_topology(
    client: httpx.AsyncClient,
    platform: Platform,
    zones: tuple[str, ...] = ("zone-a", "zone-b", "zone-c"),
    hosts_per_zone: int = 2,
    pool: str = "general",
) -> list[str]:
    """A region, a pool, the zones and their hosts (all on 127.0.0.1); returns the host ids."""
    headers = platform.headers("ooda-scenario", "infra")
    await _put(client, f"{platform.cmdb}/v1/regions/local", {}, headers)
    await _put(client, f"{platform.cmdb}/v1/pools/{pool}", {}, headers)
    hosts = []
    for zone in zones:
        await _put(client, f"{platform.cmdb}/v1/zones/{zone}", {"region_id": "local"}, headers)
        for n in range(1, hosts_per_zone + 1):
            host = f"{zone}-h{n}"
            body = {
                "zone_id": zone,
                "pool_id": pool,
                "address": "127.0.0.1",
                "cpu_millis": 4000,
                "memory_mib": 8192,
            }
            await _put(client, f"{platform.cmdb}/v1/hosts/{host}", body, headers)
            hosts.append(host)
    return hosts


async def upload_artifact(
    client: httpx.AsyncClient, platform: Platform, path: Path, team: str = "web"
) -> str:
    """Register an artifact with the pipeline as `team` (whose quota it counts against);
    returns its sha256."""
    response = await client.post(
        f"{platform.pipeline}/v1/artifacts",
        params={"name": path.name},
        content=await asyncio.to_thread(path.read_bytes),
        headers=platform.headers("ooda-scenario", f"team:{team}"),
    )
    if response.status_code >= 400:
        raise RuntimeError(f"artifact upload: {response.status_code} {response.text[:500]}")
    return str(response.json()["sha256"])


def spec_body(plan: AppPlan, artifact_sha: str) -> dict[str, Any]:
    """The CMDB ApplicationSpec document for `plan`."""
    body: dict[str, Any] = {
        "artifact": f"sha256:{artifact_sha}",
        "version": plan.version,
        "replicas": {"min": plan.min_replicas, "max": plan.max_replicas, "desired": plan.desired},
        "resources": {"cpu_millis": 250, "memory_mib": 128},
        "health_check": {"path": "/readyz", "timeout_seconds": 10},
        "slo": {"availability": 0.99, "latency_p99_ms": plan.latency_p99_ms},
        "scaling": {"target_utilisation": plan.target_utilisation, "policy": plan.policy},
        "attributes": {"capacity_rps": plan.capacity_rps},
    }
    if plan.scale_in_window_s is not None:
        body["scaling"]["scale_in_window_s"] = plan.scale_in_window_s
    if plan.season_s is not None:
        body["scaling"]["season_s"] = plan.season_s
    if plan.budget_replica_hours is not None:
        body["budget"] = {"replica_hours": plan.budget_replica_hours, "period": "day"}
    return body | plan.extra_spec


async def declare_app(
    client: httpx.AsyncClient, platform: Platform, plan: AppPlan, artifact_sha: str
) -> dict[str, Any]:
    """Declare the application and its spec as its owning team (the CMDB requests the deploy)."""
    owner = platform.headers("ooda-scenario", f"team:{plan.team}")
    await _put(client, f"{platform.cmdb}/v1/apps/{plan.app}", {"owner_team": plan.team}, owner)
    return dict(
        await _put(
            client, f"{platform.cmdb}/v1/apps/{plan.app}/spec", spec_body(plan, artifact_sha), owner
        )
    )


async def ready_instances(client: httpx.AsyncClient, platform: Platform, app: str) -> list[dict]:
    """The application's ready instances as the CMDB records them."""
    response = await client.get(f"{platform.cmdb}/v1/instances", params={"app": app})
    response.raise_for_status()
    return [i for i in response.json()["items"] if i["status"] == "ready"]


async def wait_for_instances(
    client: httpx.AsyncClient,
    platform: Platform,
    app: str,
    at_least: int,
    timeout_s: float = 120.0,
) -> list[dict]:
    """Wait until the CMDB lists at least `at_least` ready instances of `app`."""
    async with asyncio.timeout(timeout_s):
        while len(found := await ready_instances(client, platform, app)) < at_least:
            await asyncio.sleep(0.5)
    return found


async def bring_up(
    platform: Platform,
    plan: AppPlan,
    workdir: Path,
    zones: tuple[str, ...] = ("zone-a", "zone-b", "zone-c"),
) -> list[dict]:
    """Register the topology, upload the workload, declare the app and wait for its instances."""
    async with httpx.AsyncClient(timeout=30.0) as client:
        await register_topology(client, platform, zones)
        workload = build_workload(workdir / "workload.pyz")
        sha = await upload_artifact(client, platform, workload, plan.team)
        await declare_app(client, platform, plan, sha)
        return await wait_for_instances(client, platform, plan.app, plan.desired)
