"""Who may write what, for every write route of every service, on the platform as processes.

The write routes are read from each service's live OpenAPI document (every POST, PUT, PATCH and
DELETE under /v1), and `ROUTES` says how to exercise each one: a valid request against a target
owned by a fresh team, the scopes that should succeed, the tokens that must be refused and where
the service records who did it. A write route missing from `ROUTES` fails
`test_every_write_route_is_in_the_matrix`, so a new route comes with its row.

For every route: no token -> 401; the right scopes in a token for the other services only -> 401;
the wrong team's token -> 403; a token without the scope -> 403; the right token -> 2xx, and the
write's actor (the token's subject) is on record where the service keeps its history.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from ooda.auth import issue_token
from ooda.testing import SERVICES, unique

from .conftest import Platform

pytestmark = pytest.mark.integration

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SHA = "0" * 64


@dataclass
class World:
    """A fresh team owning one application, another team, and a way to call the services."""

    platform: Platform
    http: httpx.AsyncClient
    team: str
    other: str
    app: str

    @property
    def admin(self) -> dict[str, str]:
        return self.platform.token("matrix-admin", "admin")

    def token(
        self, subject: str, scopes: tuple[str, ...], audience: Sequence[str] = SERVICES
    ) -> dict[str, str]:
        named = [s.format(team=self.team, other=self.other) for s in scopes]
        token = issue_token(self.platform.infra.auth_secret, subject, named, audience=audience)
        return {"Authorization": f"Bearer {token}"}

    async def call(self, service: str, call: Call, headers: dict[str, str]) -> httpx.Response:
        return await self.http.request(
            call.method,
            self.platform.url(service) + call.path,
            params=call.params,
            json=call.json,
            content=call.content,
            headers=headers | call.headers,
        )

    async def ok(self, service: str, method: str, path: str, **kwargs: Any) -> Any:
        """A setup request as admin, which must succeed."""
        response = await self.http.request(
            method, self.platform.url(service) + path, headers=self.admin, **kwargs
        )
        assert response.status_code < 300, f"{method} {path}: {response.text}"
        return response.json() if response.content else None

    async def stored(self, service: str, sql: str, **params: Any) -> Any:
        """One value from the service's own database, where no read route shows the actor."""
        url = self.platform.services[service].env[f"{service.upper()}_DATABASE_URL"]
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return (await conn.execute(text(sql), params)).scalar_one_or_none()
        finally:
            await engine.dispose()

    async def new_app(self, team: str | None = None) -> str:
        app = unique("mx")
        await self.ok("cmdb", "PUT", f"/v1/apps/{app}", json={"owner_team": team or self.team})
        return app


@dataclass
class Call:
    """One concrete request of a route."""

    method: str
    path: str
    json: Any = None
    content: bytes | None = None
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


Prepare = Callable[[World], Awaitable[Call]]
Actor = Callable[[World, Call, httpx.Response], Awaitable[Any]]


@dataclass
class Route:
    """How to exercise one write route and find who did it."""

    service: str
    method: str
    path: str
    prepare: Prepare
    allowed: tuple[str, ...]
    denied: dict[str, tuple[str, ...]]
    actor: Actor

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.service, self.method, self.path)


# --- cmdb -----------------------------------------------------------------------------------


async def change_set_actor(w: World, call: Call, response: httpx.Response) -> Any:
    found = await w.ok("cmdb", "GET", f"/v1/change-sets/{response.json()['change_set_id']}")
    return found["actor"]


async def _region(w: World, _: str) -> dict[str, Any]:
    return {}


async def _zone(w: World, _: str) -> dict[str, Any]:
    return {"region_id": "mx-region"}


async def _pool(w: World, _: str) -> dict[str, Any]:
    return {}


async def _host(w: World, _: str) -> dict[str, Any]:
    return {
        "zone_id": "mx-zone",
        "pool_id": "mx-pool",
        "address": "127.0.0.1",
        "cpu_millis": 1000,
        "memory_mib": 1024,
    }


async def _app(w: World, _: str) -> dict[str, Any]:
    return {"owner_team": w.team}


async def _instance(w: World, _: str) -> dict[str, Any]:
    return {
        "app_id": w.app,
        "version": "1.0.0",
        "host_id": "mx-host",
        "zone_id": "mx-zone",
        "endpoint": "127.0.0.1:1",
        "started_at": "2026-12-01T00:00:00Z",
    }


async def _relation(w: World, _: str) -> dict[str, Any]:
    target = await w.new_app()
    return {
        "type": "depends_on",
        "source": {"kind": "application", "id": w.app},
        "target": {"kind": "application", "id": target},
    }


CMDB_ITEMS = {
    # collection: (the body of a valid item, the scope that writes it)
    "regions": (_region, "infra"),
    "zones": (_zone, "infra"),
    "pools": (_pool, "infra"),
    "hosts": (_host, "infra"),
    "apps": (_app, "team:{team}"),
    "instances": (_instance, "team:{team}"),
    "relations": (_relation, "team:{team}"),
}


def _item_id(collection: str) -> str:
    return unique("mx-" + collection[:3])


def cmdb_put(collection: str) -> Prepare:
    body_of = CMDB_ITEMS[collection][0]

    async def prepare(w: World) -> Call:
        item_id = _item_id(collection)
        return Call("PUT", f"/v1/{collection}/{item_id}", json=await body_of(w, item_id))

    return prepare


def cmdb_delete(collection: str) -> Prepare:
    body_of = CMDB_ITEMS[collection][0]

    async def prepare(w: World) -> Call:
        item_id = _item_id(collection)
        await w.ok("cmdb", "PUT", f"/v1/{collection}/{item_id}", json=await body_of(w, item_id))
        return Call("DELETE", f"/v1/{collection}/{item_id}")

    return prepare


def cmdb_denied(scope: str) -> dict[str, tuple[str, ...]]:
    if scope == "infra":
        return {"wrong team": ("team:{team}",), "lacking scope": ("release",)}
    return {"wrong team": ("team:{other}",), "lacking scope": ("infra", "release")}


def cmdb_collection_routes() -> list[Route]:
    routes = []
    for collection, (_, scope) in CMDB_ITEMS.items():
        for method, prepare in (("PUT", cmdb_put), ("DELETE", cmdb_delete)):
            routes.append(
                Route(
                    "cmdb",
                    method,
                    f"/v1/{collection}/{{item_id}}",
                    prepare(collection),
                    (scope,),
                    cmdb_denied(scope),
                    change_set_actor,
                )
            )
    return routes


async def put_spec(w: World) -> Call:
    spec = {
        "artifact": f"sha256:{SHA}",
        "version": "1.0.0",
        "replicas": {"min": 0, "max": 2, "desired": 0},
    }
    return Call("PUT", f"/v1/apps/{await w.new_app()}/spec", json=spec)


async def revert(w: World) -> Call:
    created = await w.ok("cmdb", "PUT", f"/v1/apps/{unique('mx')}", json={"owner_team": w.team})
    return Call("POST", f"/v1/change-sets/{created['change_set_id']}/revert")


async def reverting_actor(w: World, call: Call, response: httpx.Response) -> Any:
    return response.json()["actor"]


async def cmdb_import(w: World) -> Call:
    row = {"kind": "application", "id": unique("mx"), "owner_team": w.team}
    return Call(
        "POST",
        "/v1/import",
        content=json.dumps(row).encode(),
        params={"format": "jsonl"},
        headers={"content-type": "application/x-ndjson"},
    )


TEAM_DENIED = {"wrong team": ("team:{other}",), "lacking scope": ("infra",)}

CMDB_ROUTES = [
    *cmdb_collection_routes(),
    Route("cmdb", "PUT", "/v1/apps/{app}/spec", put_spec, ("team:{team}",), TEAM_DENIED,
          change_set_actor),
    Route("cmdb", "POST", "/v1/change-sets/{change_set_id}/revert", revert, ("team:{team}",),
          TEAM_DENIED, reverting_actor),
    Route("cmdb", "POST", "/v1/import", cmdb_import, ("team:{team}",), TEAM_DENIED,
          change_set_actor),
]  # fmt: skip

# --- pipeline -------------------------------------------------------------------------------


def _closed_window() -> str:
    """A weekly change window that is not open today (so a change waits, PENDING)."""
    days = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    return f"{days[(dt.datetime.now(dt.UTC).weekday() + 3) % 7]} 00:00-00:01 UTC"


async def post_change(w: World) -> Call:
    app = await w.new_app()
    await w.ok("pipeline", "PUT", f"/v1/apps/{app}/windows", json={"windows": [_closed_window()]})
    body = {"app": app, "kind": "scale", "idempotency_key": unique("k"), "target": {"replicas": 1}}
    return Call("POST", "/v1/changes", json=body)


async def change_actor(w: World, call: Call, response: httpx.Response) -> Any:
    return (await w.ok("pipeline", "GET", f"/v1/changes/{response.json()['id']}"))["actor"]


async def abort_change(w: World) -> Call:
    waiting = await post_change(w)
    change = await w.ok("pipeline", "POST", waiting.path, json=waiting.json)
    return Call("POST", f"/v1/changes/{change['id']}/abort", json={"reason": "matrix"})


async def aborting_actor(w: World, call: Call, response: httpx.Response) -> Any:
    change = response.json()
    assert change["reason"].startswith("abort requested by "), change["reason"]
    return await audited(w, "abort", change["app"])


async def put_freeze(w: World) -> Call:
    return Call("PUT", "/v1/freeze", json={"reason": "matrix"})


async def freeze_actor(w: World, call: Call, response: httpx.Response) -> Any:
    return (await w.ok("pipeline", "GET", "/v1/freeze"))["actor"]


async def delete_freeze(w: World) -> Call:
    await w.ok("pipeline", "PUT", "/v1/freeze", json={"reason": "matrix"})
    return Call("DELETE", "/v1/freeze")


async def audited(w: World, action: str, app: str | None = None) -> Any:
    """The actor of the latest use of `action` in the pipeline's audit log."""
    params = {"app": app} if app else {}
    entries = await w.ok("pipeline", "GET", "/v1/audit", params=params)
    return next((e["actor"] for e in entries if e["action"] == action and e["app"] == app), None)


async def lifting_actor(w: World, call: Call, response: httpx.Response) -> Any:
    return await audited(w, "lift-freeze")


async def put_windows(w: World) -> Call:
    return Call("PUT", f"/v1/apps/{await w.new_app()}/windows", json={"windows": []})


async def windows_actor(w: World, call: Call, response: httpx.Response) -> Any:
    return await audited(w, "windows", call.path.split("/")[3])


async def delete_pin(w: World) -> Call:
    return Call("DELETE", f"/v1/apps/{await w.new_app()}/pin")


async def unpinning_actor(w: World, call: Call, response: httpx.Response) -> Any:
    return await audited(w, "unpin", call.path.split("/")[3])


async def collect_artifacts(w: World) -> Call:
    return Call("POST", "/v1/artifacts/gc")


async def collector(w: World, call: Call, response: httpx.Response) -> Any:
    return await audited(w, "artifacts-gc")


async def post_artifact(w: World) -> Call:
    return Call(
        "POST", "/v1/artifacts", content=unique("artifact").encode(), params={"team": w.team}
    )


async def uploader(w: World, call: Call, response: httpx.Response) -> Any:
    return (await w.ok("pipeline", "GET", f"/v1/artifacts/{response.json()['sha256']}"))[
        "uploaded_by"
    ]


RELEASE_DENIED = {"wrong team": ("team:{other}",), "lacking scope": ("infra", "deploy")}
ADMIN_DENIED = {"wrong team": ("team:{team}",), "lacking scope": ("release", "infra")}

PIPELINE_ROUTES = [
    Route("pipeline", "POST", "/v1/changes", post_change, ("team:{team}",), RELEASE_DENIED,
          change_actor),
    Route("pipeline", "POST", "/v1/changes/{change_id}/{action}", abort_change,
          ("team:{team}",), RELEASE_DENIED, aborting_actor),
    Route("pipeline", "PUT", "/v1/freeze", put_freeze, ("admin",), ADMIN_DENIED, freeze_actor),
    Route("pipeline", "DELETE", "/v1/freeze", delete_freeze, ("admin",), ADMIN_DENIED,
          lifting_actor),
    Route("pipeline", "PUT", "/v1/apps/{app}/windows", put_windows, ("team:{team}",),
          RELEASE_DENIED, windows_actor),
    Route("pipeline", "DELETE", "/v1/apps/{app}/pin", delete_pin, ("team:{team}",),
          RELEASE_DENIED, unpinning_actor),
    Route("pipeline", "POST", "/v1/artifacts/gc", collect_artifacts, ("admin",), ADMIN_DENIED,
          collector),
    Route("pipeline", "POST", "/v1/artifacts", post_artifact, ("team:{team}",),
          {"wrong team": ("team:{other}",), "lacking scope": ("infra",)}, uploader),
]  # fmt: skip

# --- monitor --------------------------------------------------------------------------------


async def post_observation(w: World) -> Call:
    start = dt.datetime.now(dt.UTC).replace(microsecond=0)
    body = {
        "window_start": start.isoformat(),
        "window_end": (start + dt.timedelta(seconds=5)).isoformat(),
        "values": {"request_rate": 1.0},
        "instance_count": 1,
    }
    return Call("POST", f"/v1/apps/{await w.new_app()}/observations", json=body)


async def recorder(w: World, call: Call, response: httpx.Response) -> Any:
    return response.json()["recorded_by"]


def _announced(instance_id: str) -> dict[str, Any]:
    return {
        "targets": [
            {"instance_id": instance_id, "endpoint": "127.0.0.1:9", "version": "1", "zone": "z"}
        ]
    }


async def post_announced(w: World) -> Call:
    return Call(
        "POST", f"/v1/apps/{await w.new_app()}/announced-targets", json=_announced(unique("i"))
    )


async def announcer(w: World, call: Call, response: httpx.Response) -> Any:
    found = await w.ok("monitor", "GET", call.path)
    return found["targets"][0]["announced_by"]


async def delete_announced(w: World) -> Call:
    app, instance = await w.new_app(), unique("i")
    await w.ok("monitor", "POST", f"/v1/apps/{app}/announced-targets", json=_announced(instance))
    return Call("DELETE", f"/v1/apps/{app}/announced-targets/{instance}")


async def withdraw(w: World) -> Call:
    app, instance = await w.new_app(), unique("i")
    await w.ok("monitor", "POST", f"/v1/apps/{app}/announced-targets", json=_announced(instance))
    return Call(
        "POST", f"/v1/apps/{app}/announced-targets/withdraw", json={"instance_ids": [instance]}
    )


async def withdrawer(w: World, call: Call, response: httpx.Response) -> Any:
    return await monitor_audited(w, "withdraw", call.path.split("/")[3])


async def monitor_audited(w: World, action: str, app: str) -> Any:
    """The actor of the latest `action` on `app` in the monitor's audit log."""
    entries = await w.ok("monitor", "GET", f"/v1/apps/{app}/audit")
    return next((e["actor"] for e in entries if e["action"] == action), None)


async def push(w: World) -> Call:
    body = {
        "app": await w.new_app(),
        "instance": "i-1",
        "samples": [{"name": "http_requests_total", "value": 1}],
    }
    return Call("POST", "/v1/push", json=body)


async def pusher(w: World, call: Call, response: httpx.Response) -> Any:
    return await w.stored(
        "monitor", "SELECT pushed_by FROM pushed_samples WHERE app = :app", app=call.json["app"]
    )


async def put_rules(w: World) -> Call:
    rule = {"kind": "threshold", "name": "busy", "metric": "request_rate", "op": ">",
            "threshold": 100}  # fmt: skip
    return Call("PUT", f"/v1/apps/{await w.new_app()}/alert-rules", json={"rules": [rule]})


async def rules_author(w: World, call: Call, response: httpx.Response) -> Any:
    app = call.path.split("/")[3]
    stored = await w.stored(
        "monitor", "SELECT updated_by FROM alert_rules WHERE app = :app LIMIT 1", app=app
    )
    audited = await monitor_audited(w, "alert-rules", app)
    return audited if call.method == "DELETE" or stored == audited else (stored, audited)


async def delete_rules(w: World) -> Call:
    put = await put_rules(w)
    await w.ok("monitor", "PUT", put.path, json=put.json)
    return Call("DELETE", put.path)


DEPLOY_DENIED = {"wrong team": ("team:{team}",), "lacking scope": ("metrics:push", "release")}


def monitor_team_route(method: str, path: str, prepare: Prepare, scope: str, actor: Actor) -> Route:
    return Route(
        "monitor",
        method,
        path,
        prepare,
        (scope, "team:{team}"),
        {"wrong team": (scope, "team:{other}"), "lacking scope": ("team:{team}",)},
        actor,
    )


MONITOR_ROUTES = [
    monitor_team_route("POST", "/v1/apps/{app}/observations", post_observation, "metrics:push",
                       recorder),
    monitor_team_route("POST", "/v1/push", push, "metrics:push", pusher),
    monitor_team_route("PUT", "/v1/apps/{app}/alert-rules", put_rules, "alerts:write",
                       rules_author),
    Route("monitor", "DELETE", "/v1/apps/{app}/alert-rules", delete_rules,
          ("alerts:write", "team:{team}"),
          {"wrong team": ("alerts:write", "team:{other}"), "lacking scope": ("team:{team}",)},
          rules_author),
    Route("monitor", "POST", "/v1/apps/{app}/announced-targets", post_announced, ("deploy",),
          DEPLOY_DENIED, announcer),
    Route("monitor", "DELETE", "/v1/apps/{app}/announced-targets/{instance_id}",
          delete_announced, ("deploy",), DEPLOY_DENIED, withdrawer),
    Route("monitor", "POST", "/v1/apps/{app}/announced-targets/withdraw", withdraw,
          ("deploy",), DEPLOY_DENIED, withdrawer),
]  # fmt: skip

# --- elastic --------------------------------------------------------------------------------


async def put_policy(w: World) -> Call:
    body = {"min_replicas": 1, "max_replicas": 3}
    return Call("PUT", f"/v1/apps/{await w.new_app()}/policy", json=body)


async def updated_by(w: World, call: Call, response: httpx.Response) -> Any:
    body = response.json()
    return body.get("updated_by")


async def put_budget(w: World) -> Call:
    return Call("PUT", f"/v1/teams/{w.team}/budget", json={"limit": 100})


async def put_quota(w: World) -> Call:
    return Call("PUT", f"/v1/quotas/{w.team}/zone/mx-zone", json={"cpu_millis": 1, "memory_mib": 1})


async def post_migration(w: World) -> Call:
    return Call("POST", "/v1/migrations", json={"source": {"kind": "zone", "name": unique("z")}})


async def migration_requester(w: World, call: Call, response: httpx.Response) -> Any:
    return await w.stored(
        "elastic", "SELECT requested_by FROM migrations WHERE id = :id", id=response.json()["id"]
    )


INFRA_DENIED = {"wrong team": ("team:{team}",), "lacking scope": ("release", "deploy")}

ELASTIC_ROUTES = [
    Route("elastic", "PUT", "/v1/apps/{app}/policy", put_policy, ("team:{team}",),
          {"wrong team": ("team:{other}",), "lacking scope": ("infra",)}, updated_by),
    Route("elastic", "PUT", "/v1/teams/{team}/budget", put_budget, ("infra",), INFRA_DENIED,
          updated_by),
    Route("elastic", "PUT", "/v1/quotas/{team}/{scope}/{name}", put_quota, ("infra",),
          INFRA_DENIED, updated_by),
    Route("elastic", "POST", "/v1/migrations", post_migration, ("infra",), INFRA_DENIED,
          migration_requester),
]  # fmt: skip

ROUTES = [*CMDB_ROUTES, *PIPELINE_ROUTES, *MONITOR_ROUTES, *ELASTIC_ROUTES]


def _cells() -> list[Any]:
    cells = []
    for route in ROUTES:
        for cell in ("no token", "other service's token", *route.denied, "right scope",
                     "actor on record"):  # fmt: skip
            name = f"{route.service} {route.method} {route.path} | {cell}"
            cells.append(pytest.param(route, cell, id=name))
    return cells


@pytest.fixture(scope="module")
async def world(platform: Platform) -> AsyncIterator[World]:
    """Two fresh teams with an application each, and the topology infra items hang off."""
    async with httpx.AsyncClient(timeout=10.0) as http:
        w = World(platform, http, unique("team"), unique("other"), "")
        for path, body in (
            ("/v1/regions/mx-region", {}),
            ("/v1/zones/mx-zone", {"region_id": "mx-region"}),
            ("/v1/pools/mx-pool", {}),
            ("/v1/hosts/mx-host", await _host(w, "mx-host")),
        ):
            await w.ok("cmdb", "PUT", path, json=body)
        w.app = await w.new_app()
        await w.new_app(w.other)
        yield w


@pytest.fixture(scope="module")
async def live_routes(platform: Platform) -> set[tuple[str, str, str]]:
    """(service, method, path) of every write route the running services document."""
    found = set()
    async with httpx.AsyncClient(timeout=10.0) as http:
        for service in SERVICES:
            document = (await http.get(platform.url(service) + "/openapi.json")).json()
            for path, operations in document["paths"].items():
                for method in operations:
                    if method.upper() in WRITE_METHODS and path.startswith("/v1/"):
                        found.add((service, method.upper(), path))
    return found


async def test_every_write_route_is_in_the_matrix(live_routes: set[tuple[str, str, str]]) -> None:
    missing = live_routes - {route.key for route in ROUTES}
    assert missing == set(), "write routes without a row in ROUTES (add one)"


@pytest.mark.parametrize(("route", "cell"), _cells())
async def test_authorisation(
    world: World, live_routes: set[tuple[str, str, str]], route: Route, cell: str
) -> None:
    if route.key not in live_routes:
        pytest.skip(f"{route.service} has no {route.method} {route.path} in this version")
    call = await route.prepare(world)
    if cell == "no token":
        response = await world.call(route.service, call, {})
        assert response.status_code == 401, response.text
    elif cell == "other service's token":
        elsewhere = [name for name in SERVICES if name != route.service]
        headers = world.token("matrix-elsewhere", route.allowed, audience=elsewhere)
        response = await world.call(route.service, call, headers)
        assert response.status_code == 401, response.text
    elif cell in route.denied:
        headers = world.token("matrix-intruder", route.denied[cell])
        response = await world.call(route.service, call, headers)
        assert response.status_code == 403, response.text
    else:
        subject = unique("matrix-writer")
        response = await world.call(route.service, call, world.token(subject, route.allowed))
        assert 200 <= response.status_code < 300, response.text
        if cell == "actor on record":
            assert await route.actor(world, call, response) == subject, "the write's actor"
