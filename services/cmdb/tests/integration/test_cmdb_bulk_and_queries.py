"""The set-based paths of the cmdb against real PostgreSQL: the batched import, search through
the trigram index, and the blast radius counted in SQL (checked against the domain's rules)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select, text

from cmdb.config import Settings
from cmdb.domain import ApplicationSpec, FailureScope, Host, Instance, blast_radius
from cmdb.errors import Forbidden
from cmdb.handlers import Owners, authorize
from cmdb.main import MIGRATIONS, create_app
from cmdb.store import items
from ooda.auth import Actor
from ooda.testing import Infra, RunningService, running_service, unique

pytestmark = pytest.mark.integration

STARTED = "2026-11-30T12:00:00+00:00"
SPEC = {
    "artifact": "sha256:" + "b" * 64,
    "version": "1.0.0",
    "replicas": {"min": 2, "max": 4, "desired": 3},
}


@pytest.fixture(scope="module")
async def svc(infra: Infra) -> AsyncIterator[RunningService]:
    async with running_service(infra, "cmdb", Settings, create_app, MIGRATIONS) as running:
        yield running


def admin(svc: RunningService) -> dict[str, str]:
    return svc.auth("root", "admin")


async def import_rows(
    svc: RunningService, rows: list[dict[str, Any]], headers: dict[str, str], **params: str
) -> Any:
    body = "\n".join(json.dumps(r) for r in rows)
    return await svc.client.post("/v1/import", content=body, headers=headers, params=params)


def host_row(host: str, zone: str, pool: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "host",
        "id": host,
        "zone_id": zone,
        "pool_id": pool,
        "address": "10.0.0.1",
        "cpu_millis": 4000,
        "memory_mib": 8192,
    } | extra


def instance_row(instance: str, app: str, host: str, zone: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "instance",
        "id": instance,
        "app_id": app,
        "version": "1.0.0",
        "host_id": host,
        "zone_id": zone,
        "endpoint": "10.0.0.1:8000",
        "status": "ready",
        "started_at": STARTED,
    } | extra


async def test_an_import_reports_every_bad_row_and_changes_nothing(svc: RunningService) -> None:
    region, zone, pool, team = unique("region"), unique("zone"), unique("pool"), unique("team")
    app, other_app = unique("app"), unique("app")
    seeded = await import_rows(
        svc,
        [
            {"kind": "region", "id": region},
            {"kind": "pool", "id": pool},
            {"kind": "application", "id": other_app, "owner_team": "someone-else"},
        ],
        admin(svc),
    )
    assert seeded.status_code == 200, seeded.text
    new_zone = unique("zone")
    rows = [
        {"kind": "zone", "id": zone, "region_id": region},  # 1 good
        {"kind": "zone", "id": new_zone, "region_id": unique("nowhere")},  # 2 missing region
        host_row("h-" + zone, new_zone, pool),  # 3 refers to the bad row 2
        host_row("h2-" + zone, zone, unique("no-pool")),  # 4 missing pool
        {"kind": "zone", "id": zone, "region_id": region},  # 5 duplicate of row 1
        {"kind": "application", "id": app, "owner_team": team},  # 6 good
        instance_row("i-" + app, app, "h-" + zone, zone),  # 7 app's team unknown: admins only
        instance_row("i-" + other_app, other_app, "h-" + zone, zone),  # 8 other team
        {"kind": "gadget", "id": "x"},  # 9 unknown kind
    ]
    refused = await import_rows(svc, rows, svc.auth("ops", "infra", f"team:{team}"))
    assert refused.status_code == 422
    result = refused.json()
    assert result["applied"] is False and result["change_set_id"] is None
    assert [(e["row"], e["loc"]) for e in result["errors"]] == [
        (2, ["region_id"]),
        (3, ["zone_id"]),
        (4, ["pool_id"]),
        (5, ["id"]),
        (7, []),
        (8, []),
        (9, ["kind"]),
    ]
    messages = {e["row"]: e["msg"] for e in result["errors"]}
    assert "does not exist" in messages[2] and new_zone in messages[3]
    assert messages[7] == f"actor 'ops' needs scope 'admin' for instance 'i-{app}'"
    assert "team:someone-else" in messages[8]
    assert (result["created"], result["updated"], result["unchanged"]) == (2, 0, 0)
    for path in (f"/v1/zones/{zone}", f"/v1/apps/{app}"):
        assert (await svc.client.get(path)).status_code == 404


async def test_an_import_of_good_rows_the_token_may_not_write_is_forbidden(
    svc: RunningService,
) -> None:
    app, zone = unique("app"), unique("zone")
    rows = [
        {"kind": "application", "id": app, "owner_team": unique("team")},
        {"kind": "region", "id": zone},
    ]
    refused = await import_rows(svc, rows, svc.auth("mallory", f"team:{unique('team')}"))
    assert refused.status_code == 403, refused.text
    result = refused.json()
    assert result["applied"] is False and [e["row"] for e in result["errors"]] == [1, 2]
    assert all("needs scope" in e["msg"] for e in result["errors"])
    assert (await svc.client.get(f"/v1/apps/{app}")).status_code == 404


async def test_an_import_writes_one_change_set_with_a_revision_per_changed_item(
    svc: RunningService,
) -> None:
    region, zone, pool = unique("region"), unique("zone"), unique("pool")
    hosts = [f"{zone}-h{n}" for n in range(3)]
    first = await import_rows(
        svc,
        [
            {"kind": "region", "id": region},
            {"kind": "zone", "id": zone, "region_id": region},
            {"kind": "pool", "id": pool},
            *(host_row(h, zone, pool) for h in hosts),
        ],
        admin(svc),
    )
    assert first.status_code == 200, first.text
    assert first.json()["created"] == 6

    again = [
        host_row(hosts[0], zone, pool),  # unchanged
        host_row(hosts[1], zone, pool, status="maintenance", labels={"rack": "r1"}),  # updated
        host_row(f"{zone}-h9", zone, pool),  # created
    ]
    dry = await import_rows(svc, again, admin(svc), dry_run="true")
    assert (dry.json()["created"], dry.json()["updated"], dry.json()["unchanged"]) == (1, 1, 1)
    assert dry.json()["applied"] is False
    second = await import_rows(svc, again, svc.auth("ops", "infra"))
    assert second.status_code == 200, second.text
    result = second.json()
    assert (result["created"], result["updated"], result["unchanged"]) == (1, 1, 1)

    change_set = (await svc.client.get(f"/v1/change-sets/{result['change_set_id']}")).json()
    assert [(r["id"], r["op"], r["actor"]) for r in change_set["revisions"]] == [
        (hosts[1], "update", "ops"),
        (f"{zone}-h9", "create", "ops"),
    ]
    updated = change_set["revisions"][0]
    assert updated["before"]["status"] == "up" and updated["after"]["status"] == "maintenance"
    assert change_set["revisions"][1]["before"] is None
    history = (await svc.client.get(f"/v1/history/host/{hosts[1]}")).json()
    assert [r["op"] for r in history["revisions"]] == ["create", "update"]
    listed = await svc.client.get("/v1/hosts", params={"selector": "rack=r1", "zone_id": zone})
    assert [h["id"] for h in listed.json()["items"]] == [hosts[1]]
    async with svc.app.state.runtime.sessions() as session:
        version = await session.scalar(
            select(items.c.version).where(items.c.kind == "host", items.c.id == hosts[1])
        )
    assert version == 2

    reverted = await svc.client.post(
        f"/v1/change-sets/{result['change_set_id']}/revert", headers=admin(svc)
    )
    assert reverted.status_code == 201, reverted.text
    assert (await svc.client.get(f"/v1/hosts/{hosts[1]}")).json()["status"] == "up"
    assert (await svc.client.get(f"/v1/hosts/{zone}-h9")).status_code == 404


async def test_who_may_change_what_is_decided_by_the_owning_team_or_infra(
    svc: RunningService,
) -> None:
    team, app, gone = unique("team"), unique("app"), unique("app")
    region, zone, pool = unique("region"), unique("zone"), unique("pool")
    host, instance = unique("host"), unique("inst")
    setup = [
        {"kind": "region", "id": region},
        {"kind": "zone", "id": zone, "region_id": region},
        {"kind": "pool", "id": pool},
        host_row(host, zone, pool),
        {"kind": "application", "id": app, "owner_team": team},
        instance_row(instance, app, host, zone),
    ]
    assert (await import_rows(svc, setup, admin(svc))).status_code == 200
    relation = {
        "kind": "relation",
        "id": f"runs.{instance}",
        "type": "runs_on",
        "source": {"kind": "instance", "id": instance},
        "target": {"kind": "host", "id": host},
    }
    dangling = relation | {"source": {"kind": "instance", "id": "nothing"}, "id": "dangling"}
    cases: list[tuple[dict[str, Any] | None, dict[str, Any] | None]] = [
        (host_row(host, zone, pool), None),
        ({"kind": "application", "id": app, "owner_team": team}, None),
        (
            {"kind": "application", "id": app, "owner_team": "new-team"},
            {"kind": "application", "id": app, "owner_team": team},
        ),
        (instance_row(instance, app, host, zone), None),
        (instance_row("x", gone, host, zone), None),
        (relation, None),
        (dangling, None),
        (None, relation),
    ]
    actors = [
        Actor(subject="a", scopes=frozenset({"admin"})),
        Actor(subject="b", scopes=frozenset({"infra"})),
        Actor(subject="c", scopes=frozenset({f"team:{team}"})),
        Actor(subject="d", scopes=frozenset({f"team:{team}", "team:new-team"})),
        Actor(subject="e", scopes=frozenset()),
    ]
    # Which cases (by index) each actor may write: infrastructure needs `infra`; an application's
    # items its team; moving an application to another team both teams; an item whose
    # application is gone, and a relation from a missing instance (infrastructure), as said.
    may = {
        "a": set(range(len(cases))),
        "b": {0, 6},
        "c": {1, 3, 5, 7},
        "d": {1, 2, 3, 5, 7},
        "e": set(),
    }
    async with svc.app.state.runtime.sessions() as session:
        owners = await Owners.load(session, [d for pair in cases for d in pair if d is not None])
        for actor in actors:
            allowed = set()
            for n, (after, before) in enumerate(cases):
                refused = owners.refusal(actor, after, before)
                try:  # one item at a time, as the item API authorises
                    await authorize(session, actor, after, before)
                    single = None
                except Forbidden as exc:
                    single = exc.message
                assert single == refused, (actor.subject, n)
                if refused is None:
                    allowed.add(n)
            assert allowed == may[actor.subject], actor.subject


async def test_search_matches_ids_fields_and_labels_of_live_items_only(
    svc: RunningService,
) -> None:
    region, zone, pool = unique("region"), unique("zone"), unique("pool")
    marker = unique("Marker").upper()
    rows = [
        {"kind": "region", "id": region},
        {"kind": "zone", "id": zone, "region_id": region, "labels": {"note": marker}},
        {"kind": "pool", "id": pool},
        host_row(f"{zone}-a_b", zone, pool, address=f"{marker}.example"),
        host_row(f"{zone}-axb", zone, pool),
    ]
    assert (await import_rows(svc, rows, admin(svc))).status_code == 200

    async def found(q: str, **params: Any) -> list[tuple[str, str]]:
        answer = await svc.client.get("/v1/search", params={"q": q} | params)
        assert answer.status_code == 200, answer.text
        return [(i["kind"], i["id"]) for i in answer.json()["items"]]

    assert await found(marker.lower()) == [("host", f"{zone}-a_b"), ("zone", zone)]
    assert await found(marker, kind=["zone"]) == [("zone", zone)]
    assert await found(f"{zone}-a_b") == [("host", f"{zone}-a_b")]  # `_` is not a wildcard
    assert await found(f"{zone}-A%B") == []  # nor `%`
    assert len(await found(zone)) == 3
    assert await found(zone, limit=1) == [("host", f"{zone}-a_b")]
    # The text goes into the statement as a quoted literal: quotes and backslashes are text.
    assert await found(f"{marker}' OR 'x'='x") == []
    assert await found(f"{marker}\\") == []
    assert await found(f"{marker}.example'") == []
    deleted = await svc.client.delete(f"/v1/hosts/{zone}-a_b", headers=admin(svc))
    assert deleted.status_code == 200, deleted.text
    assert await found(marker) == [("zone", zone)]


async def _expected_radius(svc: RunningService, scope: FailureScope) -> dict[str, Any]:
    """The blast radius by the domain's rules over every live host, instance and spec."""
    async with svc.app.state.runtime.sessions() as session:

        async def live(kind: str) -> list[dict[str, Any]]:
            rows = await session.scalars(
                select(items.c.data).where(items.c.kind == kind, ~items.c.deleted)
            )
            return list(rows)

        hosts = [Host.model_validate(h) for h in await live("host")]
        instances = [Instance.model_validate(i) for i in await live("instance")]
        specs = {s["id"]: ApplicationSpec.model_validate(s) for s in await live("application_spec")}
    return blast_radius(scope, hosts, instances, specs).model_dump(mode="json")


async def test_the_blast_radius_counted_in_sql_follows_the_domain_rules(
    svc: RunningService,
) -> None:
    region, pool, spare_pool = unique("region"), unique("pool"), unique("pool")
    za, zb, zc = (unique("zone") for _ in range(3))
    team = unique("team")
    web, api, batch = unique("web"), unique("api"), unique("batch")
    h_a, h_b, h_c, h_down = (unique("host") for _ in range(4))
    rows: list[dict[str, Any]] = [
        {"kind": "region", "id": region},
        *({"kind": "zone", "id": z, "region_id": region} for z in (za, zb, zc)),
        {"kind": "pool", "id": pool},
        {"kind": "pool", "id": spare_pool},
        host_row(h_a, za, pool),
        host_row(h_b, zb, pool, cpu_millis=2000),
        host_row(h_c, zc, spare_pool, memory_mib=1024),
        host_row(h_down, zb, spare_pool, status="down"),
        *(
            {"kind": "application", "id": a, "owner_team": team, "tier": "critical"}
            for a in (web, api, batch)
        ),
        instance_row(f"{web}-1", web, h_a, za),
        instance_row(f"{web}-2", web, h_b, zb),
        instance_row(f"{web}-3", web, h_c, zc, status="starting"),
        instance_row(f"{web}-4", web, h_a, za, status="stopped"),  # not live: not counted
        instance_row(f"{api}-1", api, h_a, za),
        instance_row(f"{api}-2", api, h_a, za, status="failed"),
        instance_row(f"{api}-3", api, h_b, za),  # says zone a while its host is in zone b
        instance_row(f"{batch}-1", batch, h_c, zc),
        instance_row(f"{batch}-2", batch, h_down, zb),
    ]
    assert (await import_rows(svc, rows, admin(svc))).status_code == 200
    owner = svc.auth("alice", f"team:{team}")
    for app, spec in (
        (web, SPEC),
        (
            api,
            SPEC | {"replicas": {"min": 1, "max": 2, "desired": 1}, "slo": {"availability": 0.9}},
        ),
    ):
        answer = await svc.client.put(f"/v1/apps/{app}/spec", json=spec, headers=owner)
        assert answer.status_code == 201, answer.text
    gone = await svc.client.delete(f"/v1/instances/{batch}-2", headers=owner)
    assert gone.status_code == 200, gone.text

    for scope in (
        FailureScope(kind="zone", id=za),
        FailureScope(kind="zone", id=zb),
        FailureScope(kind="zone", id=zc),
        FailureScope(kind="pool", id=pool),
        FailureScope(kind="pool", id=spare_pool),
    ):
        answer = await svc.client.get("/v1/blast-radius", params={scope.kind: scope.id})
        assert answer.status_code == 200, answer.text
        assert answer.json() == await _expected_radius(svc, scope), scope
    radius = (await svc.client.get("/v1/blast-radius", params={"zone": za})).json()
    impacts = {a["app_id"]: a for a in radius["applications"]}
    assert set(impacts) >= {web, api} and batch not in impacts
    assert (impacts[web]["instances_before"], impacts[web]["instances_lost"]) == (3, 1)
    assert impacts[api]["instances_lost"] == 2 and impacts[api]["slo_holds"] is False
    missing = await svc.client.get("/v1/blast-radius", params={"zone": unique("zone")})
    assert missing.status_code == 404


async def test_reads_survive_the_server_closing_their_connections(svc: RunningService) -> None:
    """As after a database restart: every pooled connection is closed by the server."""
    region = unique("region")
    assert (await import_rows(svc, [{"kind": "region", "id": region}], admin(svc))).is_success
    reads = [svc.client.get(f"/v1/regions/{region}") for _ in range(4)]
    assert all(r.status_code == 200 for r in await asyncio.gather(*reads))

    async with svc.app.state.runtime.engine.connect() as conn:
        pids = list(
            await conn.scalars(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND usename = current_user AND backend_type = 'client backend'"
                    " AND pid <> pg_backend_pid()"
                )
            )
        )
        assert pids
        for pid in pids:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        still = text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:pids)")
        async with asyncio.timeout(10):
            while await conn.scalar(still, {"pids": pids}):
                await asyncio.sleep(0.05)
                await conn.execute(text("SELECT pg_stat_clear_snapshot()"))
    await asyncio.sleep(0.2)  # the event loop sees the sockets close

    for _ in range(6):
        answer = await svc.client.get(f"/v1/regions/{region}")
        assert answer.status_code == 200, answer.text
    listed = await svc.client.get("/v1/search", params={"q": region})
    assert [i["id"] for i in listed.json()["items"]] == [region]


async def test_pages_of_stored_json_chain_by_cursor_in_any_sort_order(svc: RunningService) -> None:
    run, team = unique("run"), unique("team")
    tiers = ["low", "critical", "standard", "high", "low"]
    apps = [
        {
            "kind": "application",
            "id": f"{run}-{n}",
            "owner_team": team,
            "tier": tier,
            "labels": {"run": run, "odd": str(n % 2)},
        }
        for n, tier in enumerate(tiers)
    ]
    assert (await import_rows(svc, apps, admin(svc))).status_code == 200

    async def pages(**params: str) -> list[list[str]]:
        seen, cursor = [], None
        while True:
            query = params | ({"cursor": cursor} if cursor else {})
            answer = await svc.client.get("/v1/apps", params=query)
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert set(body) == {"items", "next"}
            seen.append([a["id"] for a in body["items"]])
            cursor = body["next"]
            if cursor is None:
                return seen

    by_tier = await pages(selector=f"run={run}", sort="-tier", limit="2")
    assert by_tier == [[f"{run}-2", f"{run}-4"], [f"{run}-0", f"{run}-3"], [f"{run}-1"]]
    odd = await pages(selector=f"run={run},odd=1", limit="1")
    assert odd == [[f"{run}-1"], [f"{run}-3"]]
    stored = (await svc.client.get("/v1/apps", params={"id": f"{run}-3"})).json()["items"]
    assert stored == [apps[3] | {"attributes": {}}]
    mixed = await svc.client.get(
        "/v1/apps", params={"selector": f"run={run}", "sort": "-tier", "cursor": "bm9wZQ"}
    )
    assert mixed.status_code == 400


async def test_an_import_too_large_for_one_event_is_announced_in_numbered_parts(
    svc: RunningService,
) -> None:
    zone, pool = unique("zone"), unique("pool")
    hosts = [f"{zone}-{n:05d}-" + "h" * 220 for n in range(4000)]  # ~1.1 MB of item changes
    base = [{"kind": "region", "id": zone + "-r"}, {"kind": "pool", "id": pool}]
    zone_row = {"kind": "zone", "id": zone, "region_id": zone + "-r"}
    result = await import_rows(
        svc, [*base, zone_row, *(host_row(h, zone, pool) for h in hosts)], admin(svc)
    )
    assert result.status_code == 200, result.text
    change_set_id = result.json()["change_set_id"]
    outbox = svc.app.state.runtime.messaging.outbox
    async with svc.app.state.runtime.sessions() as session:
        rows = (
            await session.execute(
                select(outbox.c.key, outbox.c.value).where(outbox.c.topic.like("%cmdb-changed"))
            )
        ).all()
    parts = [
        json.loads(r.value) for r in rows if json.loads(r.value)["change_set_id"] == change_set_id
    ]
    assert len(parts) == 2
    assert sorted((p["part"], p["parts"]) for p in parts) == [(1, 2), (2, 2)]
    assert all(len(r.value) < 1_000_000 for r in rows)
    assert sum(len(p["items"]) for p in parts) == 4000 + 3


async def test_an_import_larger_than_the_limit_is_refused_while_it_streams(infra: Infra) -> None:
    limit = 256 * 1024
    sent = 0
    line = (json.dumps(host_row(unique("h"), "z", "p")) + "\n").encode()

    async def endless() -> AsyncIterator[bytes]:  # chunked: no Content-Length
        nonlocal sent
        while sent < 64 * 1024 * 1024:
            chunk = line * 1000
            sent += len(chunk)
            yield chunk

    async with running_service(
        infra, "cmdb", Settings, create_app, MIGRATIONS, import_max_bytes=limit
    ) as svc:
        refused = await svc.client.post("/v1/import", content=endless(), headers=admin(svc))
        assert sent < 2 * limit, sent  # reading stopped at the limit, not after 64 MiB
        assert refused.status_code == 413, refused.text
        assert f"{limit} bytes" in refused.json()["detail"]
        # Other write routes keep the service's default limit (1 MiB unless set).
        big = {"owner_team": "t", "labels": {"x": "y" * (2 * 1024 * 1024)}}
        too_big = await svc.client.put(f"/v1/apps/{unique('a')}", json=big, headers=admin(svc))
        assert too_big.status_code == 413, too_big.text
        small = await import_rows(
            svc, [host_row(unique("h"), "z", "p")], admin(svc), dry_run="true"
        )
        assert small.status_code != 413 and small.json()["rows"] == 1, small.text
