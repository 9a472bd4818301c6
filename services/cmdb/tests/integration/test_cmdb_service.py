"""The cmdb in-process on real Kafka and PostgreSQL: items, history, specs and the closed loop."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer

from cmdb.config import Settings
from cmdb.main import MIGRATIONS, create_app
from ooda.events import DeployDone, decode
from ooda.events.contracts import InstanceRef
from ooda.testing import Infra, RunningService, free_port, running_service, unique

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
async def svc(infra: Infra) -> AsyncIterator[RunningService]:
    async with running_service(infra, "cmdb", Settings, create_app, MIGRATIONS) as running:
        yield running


def infra_token(svc: RunningService) -> dict[str, str]:
    return svc.auth("ops", "infra")


async def put(svc: RunningService, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    response = await svc.client.put(path, json=body, headers=headers)
    assert response.status_code in (200, 201), response.text
    return response.json()


async def seed_zone(svc: RunningService) -> tuple[str, str, str]:
    """A region, a zone and a pool; returns their ids."""
    region, zone, pool = unique("region"), unique("zone"), unique("pool")
    await put(svc, f"/v1/regions/{region}", {}, infra_token(svc))
    await put(svc, f"/v1/zones/{zone}", {"region_id": region}, infra_token(svc))
    await put(svc, f"/v1/pools/{pool}", {}, infra_token(svc))
    return region, zone, pool


def host_body(zone: str, pool: str, **extra: Any) -> dict[str, Any]:
    return {
        "zone_id": zone,
        "pool_id": pool,
        "address": "127.0.0.1",
        "cpu_millis": 4000,
        "memory_mib": 8192,
    } | extra


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.2)


async def read_events(
    svc: RunningService, topic: str, app: str, settle: float = 2.0, timeout: float = 20.0
) -> list[Any]:
    """Every event about `app` on a topic: wait for the first, then for `settle` seconds more."""
    consumer = AIOKafkaConsumer(
        svc.prefix + topic,
        **svc.settings.kafka().options(),
        auto_offset_reset="earliest",
        group_id=unique("reader"),
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[Any] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        quiet_until: float | None = None
        while loop.time() < (quiet_until or deadline):
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                for r in records:
                    event = decode(r.key, r.headers, r.value)
                    if event.data.app == app:
                        found.append(event)
            if found and quiet_until is None:
                quiet_until = loop.time() + settle
    finally:
        await consumer.stop()
    return found


async def test_items_round_trip_through_history_as_of_and_revert(svc: RunningService) -> None:
    _, zone, pool = await seed_zone(svc)
    host = unique("host")
    created = await put(svc, f"/v1/hosts/{host}", host_body(zone, pool), infra_token(svc))
    assert created["op"] == "create"
    await asyncio.sleep(0.05)
    between = datetime.now(UTC)
    await asyncio.sleep(0.05)
    updated = await put(
        svc,
        f"/v1/hosts/{host}",
        host_body(zone, pool, status="maintenance"),
        svc.auth("bob", "admin"),
    )
    assert updated["op"] == "update"
    same = await put(
        svc, f"/v1/hosts/{host}", host_body(zone, pool, status="maintenance"), infra_token(svc)
    )
    assert same == {"item": same["item"], "op": None, "change_set_id": None}

    history = (await svc.client.get(f"/v1/history/host/{host}")).json()
    assert [(r["op"], r["actor"]) for r in history["revisions"]] == [
        ("create", "ops"),
        ("update", "bob"),
    ]
    past = await svc.client.get(f"/v1/history/host/{host}", params={"as_of": between.isoformat()})
    assert past.json()["state"]["status"] == "up"
    as_of = await svc.client.get(f"/v1/hosts/{host}", params={"as_of": between.isoformat()})
    assert as_of.json()["status"] == "up"

    reverted = await svc.client.post(
        f"/v1/change-sets/{updated['change_set_id']}/revert", headers=infra_token(svc)
    )
    assert reverted.status_code == 201, reverted.text
    assert reverted.json()["reverts"] == updated["change_set_id"]
    assert (await svc.client.get(f"/v1/hosts/{host}")).json()["status"] == "up"
    original = (await svc.client.get(f"/v1/change-sets/{updated['change_set_id']}")).json()
    assert original["reverted_by"] == reverted.json()["id"]
    ops = [r["op"] for r in (await svc.client.get(f"/v1/history/host/{host}")).json()["revisions"]]
    assert ops == ["create", "update", "update"]
    again = await svc.client.post(
        f"/v1/change-sets/{updated['change_set_id']}/revert", headers=infra_token(svc)
    )
    assert again.status_code == 409


async def test_a_revert_over_later_changes_is_refused_unless_forced(svc: RunningService) -> None:
    _, zone, pool = await seed_zone(svc)
    host = unique("host")
    first = await put(svc, f"/v1/hosts/{host}", host_body(zone, pool), infra_token(svc))
    await put(svc, f"/v1/hosts/{host}", host_body(zone, pool, cpu_millis=8000), infra_token(svc))

    refused = await svc.client.post(
        f"/v1/change-sets/{first['change_set_id']}/revert", headers=infra_token(svc)
    )
    assert refused.status_code == 409
    assert refused.json()["conflicts"][0]["item"] == f"host/{host}"
    assert (await svc.client.get(f"/v1/hosts/{host}")).json()["cpu_millis"] == 8000

    forced = await svc.client.post(
        f"/v1/change-sets/{first['change_set_id']}/revert",
        params={"force": "true"},
        headers=infra_token(svc),
    )
    assert forced.status_code == 201, forced.text
    assert (await svc.client.get(f"/v1/hosts/{host}")).status_code == 404
    history = (await svc.client.get(f"/v1/history/host/{host}")).json()
    assert [r["op"] for r in history["revisions"]] == ["create", "update", "delete"]


async def test_label_selectors_filter_and_cursors_page_through_sorted_items(
    svc: RunningService,
) -> None:
    _, zone, pool = await seed_zone(svc)
    run = unique("run")
    for n in range(5):
        labels = {"run": run, "rack": "r1" if n % 2 else "r2", "slot": str(n)}
        body = host_body(zone, pool, cpu_millis=1000 * (5 - n), labels=labels)
        await put(svc, f"/v1/hosts/{run}-h{n}", body, infra_token(svc))

    selected = await svc.client.get(
        "/v1/hosts", params={"selector": f"run={run},rack in (r2),slot notin (4)"}
    )
    assert [h["id"] for h in selected.json()["items"]] == [f"{run}-h0", f"{run}-h2"]

    seen, cursor = [], None
    while True:
        params = {"selector": f"run={run}", "sort": "cpu_millis", "limit": "2"}
        page = (
            await svc.client.get(
                "/v1/hosts", params=params | ({"cursor": cursor} if cursor else {})
            )
        ).json()
        seen.append([h["id"] for h in page["items"]])
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == [[f"{run}-h4", f"{run}-h3"], [f"{run}-h2", f"{run}-h1"], [f"{run}-h0"]]

    by_field = await svc.client.get("/v1/hosts", params={"zone_id": zone, "sort": "-id"})
    assert [h["id"] for h in by_field.json()["items"]] == [f"{run}-h{n}" for n in range(4, -1, -1)]
    assert by_field.json()["items"][0]["allocated"] == {"cpu_millis": 0, "memory_mib": 0}

    bad = await svc.client.get("/v1/hosts", params={"selector": "run in (a,"})
    assert bad.status_code == 400
    assert bad.json()["position"] == 10
    unknown = await svc.client.get("/v1/hosts", params={"colour": "red"})
    assert unknown.status_code == 400 and "colour" in unknown.json()["detail"]

    found = (await svc.client.get("/v1/search", params={"q": f"{run}-h3"})).json()["items"]
    assert [i["id"] for i in found] == [f"{run}-h3"]


async def test_selectors_follow_every_change_of_labels_deletes_and_reverts(
    svc: RunningService,
) -> None:
    """`key=value` reads the label index, which triggers keep: it must follow every write path."""
    _, zone, pool = await seed_zone(svc)
    run = unique("run")

    async def selected(selector: str) -> list[str]:
        page = await svc.client.get("/v1/hosts", params={"selector": selector})
        assert page.status_code == 200, page.text
        return [h["id"] for h in page.json()["items"]]

    hosts = [f"{run}-h{n}" for n in range(3)]
    for n, host in enumerate(hosts):
        labels = {"run": run, "rack": f"r{n % 2}"}
        await put(svc, f"/v1/hosts/{host}", host_body(zone, pool, labels=labels), infra_token(svc))
    assert await selected(f"run={run},rack=r0") == [hosts[0], hosts[2]]
    assert await selected(f"rack in (r1),run={run}") == [hosts[1]]
    assert await selected(f"rack in (r1,r0,r9),run={run}") == hosts

    # A change of labels moves the item; a change of anything else leaves it where it was.
    moved = await put(
        svc,
        f"/v1/hosts/{hosts[0]}",
        host_body(zone, pool, labels={"run": run, "rack": "r1"}),
        infra_token(svc),
    )
    await put(
        svc,
        f"/v1/hosts/{hosts[2]}",
        host_body(zone, pool, cpu_millis=9000, labels={"run": run, "rack": "r0"}),
        infra_token(svc),
    )
    assert await selected(f"run={run},rack=r0") == [hosts[2]]
    assert await selected(f"run={run},rack=r1") == [hosts[0], hosts[1]]

    deleted = await svc.client.delete(f"/v1/hosts/{hosts[1]}", headers=infra_token(svc))
    assert deleted.status_code == 200, deleted.text
    assert await selected(f"run={run},rack=r1") == [hosts[0]]

    # Reverting the deletion brings the item back under its labels; reverting the move, too.
    for change in (deleted.json(), moved):
        reverted = await svc.client.post(
            f"/v1/change-sets/{change['change_set_id']}/revert", headers=infra_token(svc)
        )
        assert reverted.status_code == 201, reverted.text
    assert await selected(f"run={run},rack=r0") == [hosts[0], hosts[2]]
    assert await selected(f"run={run},rack=r1") == [hosts[1]]

    imported = await svc.client.post(
        "/v1/import",
        content=json.dumps(
            {"kind": "host", "id": f"{run}-h9"} | host_body(zone, pool, labels={"run": run})
        ),
        headers=infra_token(svc) | {"content-type": "application/x-ndjson"},
    )
    assert imported.status_code == 200, imported.text
    assert await selected(f"run={run}") == [*hosts, f"{run}-h9"]


async def test_bad_input_is_refused_with_paths_and_nothing_is_half_applied(
    svc: RunningService,
) -> None:
    _, zone, pool = await seed_zone(svc)
    host = unique("host")
    unknown_field = await svc.client.put(
        f"/v1/hosts/{host}", json=host_body(zone, pool, colour="red"), headers=infra_token(svc)
    )
    assert unknown_field.status_code == 422
    assert ["body", "colour"] in [p["loc"] for p in unknown_field.json()["detail"]]
    bad_value = await svc.client.put(
        f"/v1/hosts/{host}", json=host_body(zone, pool, cpu_millis=-1), headers=infra_token(svc)
    )
    assert [p["loc"] for p in bad_value.json()["detail"]] == [["body", "cpu_millis"]]
    missing = await svc.client.put(
        f"/v1/hosts/{host}", json=host_body("nowhere", pool), headers=infra_token(svc)
    )
    assert missing.status_code == 422
    assert "zone 'nowhere' does not exist" in missing.json()["message"]

    good_row = {"kind": "host", "id": host} | host_body(zone, pool)
    bad_row = {"kind": "host", "id": unique("host")} | host_body(zone, "no-pool")
    lines = "\n".join(json.dumps(r) for r in (good_row, bad_row))
    refused = await svc.client.post("/v1/import", content=lines, headers=infra_token(svc))
    assert refused.status_code == 422
    assert refused.json()["applied"] is False
    assert [(e["row"], e["loc"]) for e in refused.json()["errors"]] == [(2, ["pool_id"])]
    assert (await svc.client.get(f"/v1/hosts/{host}")).status_code == 404

    dry = await svc.client.post(
        "/v1/import",
        content=json.dumps(good_row),
        params={"dry_run": "true"},
        headers=infra_token(svc),
    )
    assert dry.json()["created"] == 1 and dry.json()["applied"] is False
    assert (await svc.client.get(f"/v1/hosts/{host}")).status_code == 404

    csv_text = (
        "kind,id,zone_id,pool_id,address,cpu_millis,memory_mib,labels.rack\n"
        f"host,{host},{zone},{pool},10.0.0.1,2000,4096,r7\n"
    )
    imported = await svc.client.post(
        "/v1/import", content=csv_text, headers=infra_token(svc) | {"content-type": "text/csv"}
    )
    assert imported.status_code == 200, imported.text
    assert imported.json()["created"] == 1
    stored = (await svc.client.get(f"/v1/hosts/{host}")).json()
    assert (stored["cpu_millis"], stored["labels"]) == (2000, {"rack": "r7"})
    in_use = await svc.client.delete(f"/v1/pools/{pool}", headers=infra_token(svc))
    assert in_use.status_code == 409 and host in in_use.json()["detail"]


async def test_writes_need_a_token_whose_scopes_cover_the_owner(svc: RunningService) -> None:
    app, team = unique("app"), unique("team")
    body = {"owner_team": team}
    assert (await svc.client.put(f"/v1/apps/{app}", json=body)).status_code == 401
    other = await svc.client.put(f"/v1/apps/{app}", json=body, headers=svc.auth("eve", "team:x"))
    assert other.status_code == 403 and f"team:{team}" in other.json()["detail"]
    await put(svc, f"/v1/apps/{app}", body, svc.auth("alice", f"team:{team}"))
    _, zone, pool = await seed_zone(svc)
    host = await svc.client.put(
        f"/v1/hosts/{unique('host')}",
        json=host_body(zone, pool),
        headers=svc.auth("alice", f"team:{team}"),
    )
    assert host.status_code == 403
    history = (await svc.client.get(f"/v1/history/application/{app}")).json()
    assert history["revisions"][0]["actor"] == "alice"


SPEC = {
    "artifact": "sha256:" + "a" * 64,
    "version": "1.0.0",
    "replicas": {"min": 2, "max": 4, "desired": 2},
}


async def test_a_spec_revision_publishes_exactly_one_change_request(svc: RunningService) -> None:
    app, team = unique("app"), unique("team")
    owner = svc.auth("alice", f"team:{team}")
    await put(svc, f"/v1/apps/{app}", {"owner_team": team}, owner)

    first = await svc.client.put(f"/v1/apps/{app}/spec", json=SPEC, headers=owner)
    assert first.status_code == 201, first.text
    assert first.json()["change_request_id"] == f"cmdb/{app}/spec-1/deploy"
    repeat = await svc.client.put(f"/v1/apps/{app}/spec", json=SPEC, headers=owner)
    assert repeat.status_code == 200 and repeat.json()["created"] is False
    bad = await svc.client.put(
        f"/v1/apps/{app}/spec",
        json=SPEC | {"replicas": {"min": 3, "max": 2, "desired": 2}},
        headers=owner,
    )
    assert bad.status_code == 422

    events = await read_events(svc, "change-requested", app)
    assert [(e.data.request_id, e.data.cause) for e in events] == [
        (f"cmdb/{app}/spec-1/deploy", f"cmdb/{app}/spec-1")
    ]
    assert events[0].data.target.version == "1.0.0" and events[0].data.target.replicas == 2
    spec = (await svc.client.get(f"/v1/apps/{app}/spec")).json()
    assert (spec["revision"], spec["slo"]["latency_p99_ms"]) == (1, 500.0)

    scaled = SPEC | {"replicas": {"min": 2, "max": 6, "desired": 3}}
    second = await svc.client.put(f"/v1/apps/{app}/spec", json=scaled, headers=owner)
    assert second.json()["change_request_id"] == f"cmdb/{app}/spec-2/scale"
    revisions = (await svc.client.get(f"/v1/apps/{app}/spec/revisions")).json()
    assert [(r["revision"], r["actor"]) for r in revisions] == [(2, "alice"), (1, "alice")]


async def test_reverting_a_spec_change_is_a_new_revision_that_rolls_out(
    svc: RunningService,
) -> None:
    app, team = unique("app"), unique("team")
    owner = svc.auth("alice", f"team:{team}")
    await put(svc, f"/v1/apps/{app}", {"owner_team": team}, owner)
    await put(svc, f"/v1/apps/{app}/spec", SPEC, owner)
    second = await put(svc, f"/v1/apps/{app}/spec", SPEC | {"version": "2.0.0"}, owner)

    reverted = await svc.client.post(
        f"/v1/change-sets/{second['change_set_id']}/revert", headers=svc.auth("bob", f"team:{team}")
    )
    assert reverted.status_code == 201, reverted.text

    spec = (await svc.client.get(f"/v1/apps/{app}/spec")).json()
    assert (spec["revision"], spec["version"]) == (3, "1.0.0")
    revisions = (await svc.client.get(f"/v1/apps/{app}/spec/revisions")).json()
    assert [(r["revision"], r["actor"], r["spec"]["version"]) for r in revisions] == [
        (3, "bob", "1.0.0"),
        (2, "alice", "2.0.0"),
        (1, "alice", "1.0.0"),
    ]
    assert revisions[0]["change_set_id"] == reverted.json()["id"]
    (revision,) = reverted.json()["revisions"]
    assert (revision["actor"], revision["after"]["revision"]) == ("bob", 3)
    requested = await read_events(svc, "change-requested", app)
    assert [(e.data.request_id, e.data.target.version, e.data.requested_by) for e in requested] == [
        (f"cmdb/{app}/spec-1/deploy", "1.0.0", "alice"),
        (f"cmdb/{app}/spec-2/deploy", "2.0.0", "alice"),
        (f"cmdb/{app}/spec-3/deploy", "1.0.0", "bob"),
    ]


def deploy_done(app: str, sequence: int, hosts: list[str], zone: str, version: str) -> DeployDone:
    return DeployDone(
        app=app,
        change_id=unique("chg"),
        request_id=unique("req"),
        kind="deploy",
        outcome="succeeded",
        version=version,
        replicas=len(hosts),
        instances=[
            InstanceRef(
                id=f"{app}-{n}",
                version=version,
                host=host,
                zone=zone,
                endpoint=f"http://127.0.0.1:{9100 + n}",
                status="ready",
                started_at=T0,
            )
            for n, host in enumerate(hosts)
        ],
        sequence=sequence,
        started_at=T0,
        finished_at=T0 + timedelta(minutes=sequence),
    )


async def test_deploy_done_is_applied_once_and_an_older_sequence_changes_nothing(
    svc: RunningService,
) -> None:
    app, team = unique("app"), unique("team")
    owner = svc.auth("alice", f"team:{team}")
    await put(svc, f"/v1/apps/{app}", {"owner_team": team, "labels": {"tier": "web"}}, owner)
    await put(svc, f"/v1/apps/{app}/spec", SPEC, owner)
    _, zone, pool = await seed_zone(svc)
    hosts = [unique("host") for _ in range(2)]
    for host in hosts:
        await put(svc, f"/v1/hosts/{host}", host_body(zone, pool), infra_token(svc))
    rt = svc.app.state.runtime

    async def publish(payload: DeployDone) -> None:
        async with rt.sessions() as session, session.begin():
            rt.outbox.add(session, payload)

    async def instances() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (
            await svc.client.get("/v1/instances", params={"app": app})
        ).json()["items"]
        return items

    # Reality: one instance where the spec wants at least two, so the cmdb asks to scale.
    await publish(deploy_done(app, 5, hosts[:1], zone, "1.0.0"))
    await until(lambda: _has(instances, 1))
    await publish(deploy_done(app, 5, hosts[:1], zone, "1.0.0"))  # replayed sequence
    await publish(deploy_done(app, 3, hosts, zone, "0.9.0"))  # older sequence
    await publish(deploy_done(app, 6, hosts[:1], zone, "1.0.0"))  # newer, still drifting
    await until(lambda: _watermark_is(svc, app, 6))

    (instance,) = await instances()
    assert (instance["version"], instance["host_id"], instance["endpoint"]) == (
        "1.0.0",
        hosts[0],
        "127.0.0.1:9100",
    )
    history = (await svc.client.get(f"/v1/history/instance/{app}-0")).json()
    assert [r["op"] for r in history["revisions"]] == ["create"]
    # The actor is the event's producer: deploy-done comes from the pipeline.
    assert history["revisions"][0]["actor"] == "event:/ooda/pipeline"

    changed = await read_events(svc, "cmdb-changed", app)
    by_instances = [e for e in changed if e.data.items[0].type == "instance"]
    assert len(by_instances) == 1 and by_instances[0].data.actor == "event:/ooda/pipeline"
    requested = await read_events(svc, "change-requested", app)
    assert sorted(e.data.request_id for e in requested) == [
        f"cmdb/{app}/spec-1/deploy",
        f"cmdb/{app}/spec-1/scale",
    ]
    allocated = (await svc.client.get("/v1/hosts", params={"id": hosts[0]})).json()["items"]
    assert allocated[0]["allocated"] == {"cpu_millis": 500, "memory_mib": 512}
    on_host = (await svc.client.get(f"/v1/hosts/{hosts[0]}/instances")).json()
    assert [i["id"] for i in on_host] == [f"{app}-0"]

    targets = (await svc.client.get("/v1/sd/prometheus")).json()
    (group,) = [g for g in targets if g["labels"]["app"] == app]
    assert group == {
        "targets": ["127.0.0.1:9100"],
        "labels": {
            "app": app,
            "instance": f"{app}-0",
            "zone": zone,
            "host": hosts[0],
            "version": "1.0.0",
        },
    }
    radius = (await svc.client.get("/v1/blast-radius", params={"zone": zone})).json()
    (impact,) = [a for a in radius["applications"] if a["app_id"] == app]
    assert impact["instances_left"] == 0 and impact["slo_holds"] is False


async def _has(instances: Callable[[], Awaitable[list[Any]]], count: int) -> bool:
    return len(await instances()) == count


async def _watermark_is(svc: RunningService, app: str, sequence: int) -> bool:
    from sqlalchemy import select

    from cmdb.store import instance_watermarks

    async with svc.app.state.runtime.sessions() as session:
        value = await session.scalar(
            select(instance_watermarks.c.sequence).where(instance_watermarks.c.app_id == app)
        )
    return bool(value == sequence)


async def test_a_malformed_deploy_done_goes_to_the_dead_letters(svc: RunningService) -> None:
    app = unique("app")
    rt = svc.app.state.runtime
    bad = deploy_done(app, 1, ["host-x"], "zone-x", "1.0.0").model_copy(
        update={
            "instances": [
                InstanceRef(id="Not Valid", version="1", host="h", zone="z", endpoint="http://h:1")
            ]
        }
    )
    async with rt.sessions() as session, session.begin():
        rt.outbox.add(session, bad)

    (dead,) = await read_events(svc, "deploy-done.dlq", app, settle=0.5)
    assert dead.data.instances[0].id == "Not Valid"
    assert (await svc.client.get("/v1/instances", params={"app": app})).json()["items"] == []


async def dead_letters(svc: RunningService, app: str, timeout: float = 30.0) -> list[Any]:
    """The `deploy-done` dead letters about `app`, each as (event, the error header)."""
    consumer = AIOKafkaConsumer(
        svc.prefix + "deploy-done.dlq",
        **svc.settings.kafka().options(),
        auto_offset_reset="earliest",
        group_id=unique("reader"),
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[Any] = []
    try:
        async with asyncio.timeout(timeout):
            while not found:
                batch = await consumer.getmany(timeout_ms=300)
                for records in batch.values():
                    for r in records:
                        event = decode(r.key, r.headers, r.value)
                        if event.data.app == app:
                            found.append((event, dict(r.headers)["ooda_dlq_error"].decode()))
    finally:
        await consumer.stop()
    return found


async def test_a_forged_sequence_far_ahead_is_dead_lettered_and_later_ones_still_apply(
    svc: RunningService,
) -> None:
    app, team = unique("app"), unique("team")
    await put(svc, f"/v1/apps/{app}", {"owner_team": team}, svc.auth("alice", f"team:{team}"))
    _, zone, pool = await seed_zone(svc)
    hosts = [unique("host") for _ in range(3)]
    for host in hosts:
        await put(svc, f"/v1/hosts/{host}", host_body(zone, pool), infra_token(svc))
    rt = svc.app.state.runtime
    for payload in (
        deploy_done(app, 1, hosts[:1], zone, "1.0.0"),
        deploy_done(app, 3, hosts, zone, "6.6.6").model_copy(update={"sequence": 9 * 10**12}),
        deploy_done(app, 2, hosts[:2], zone, "1.0.1"),
    ):
        async with rt.sessions() as session, session.begin():
            rt.outbox.add(session, payload)

    await until(lambda: _watermark_is(svc, app, 2))
    listed = (await svc.client.get("/v1/instances", params={"app": app})).json()["items"]
    assert [(i["id"], i["version"]) for i in listed] == [
        (f"{app}-0", "1.0.1"),
        (f"{app}-1", "1.0.1"),
    ]
    ((dead, error),) = await dead_letters(svc, app)
    assert dead.data.sequence == 9_000_000_000_000
    assert "sequence 9000000000000" in error and "past the applied 1" in error


async def test_relations_answer_what_depends_on_an_application(svc: RunningService) -> None:
    team = unique("team")
    owner = svc.auth("alice", f"team:{team}")
    db, api, web = unique("db"), unique("api"), unique("web")
    for app in (db, api, web):
        await put(svc, f"/v1/apps/{app}", {"owner_team": team}, owner)
    for source, target in ((api, db), (web, api)):
        relation = {
            "type": "depends_on",
            "source": {"kind": "application", "id": source},
            "target": {"kind": "application", "id": target},
        }
        await put(svc, f"/v1/relations/{source}.uses.{target}", relation, owner)

    found = (await svc.client.get(f"/v1/apps/{db}/dependents")).json()
    assert found == [{"app": api, "distance": 1}, {"app": web, "distance": 2}]
    refused = await svc.client.delete(f"/v1/apps/{db}", headers=owner)
    assert refused.status_code == 409 and f"{api}.uses.{db}" in refused.json()["detail"]


async def test_another_teams_dependency_does_not_stop_the_owner_deleting_its_app(
    svc: RunningService,
) -> None:
    ours, theirs = unique("team"), unique("team")
    owner, other = svc.auth("alice", f"team:{ours}"), svc.auth("mallory", f"team:{theirs}")
    db, web, api = unique("db"), unique("web"), unique("api")
    await put(svc, f"/v1/apps/{db}", {"owner_team": ours}, owner)
    await put(svc, f"/v1/apps/{api}", {"owner_team": ours}, owner)
    await put(svc, f"/v1/apps/{web}", {"owner_team": theirs}, other)
    uses = {
        "type": "depends_on",
        "source": {"kind": "application", "id": web},
        "target": {"kind": "application", "id": db},
    }
    await put(svc, f"/v1/relations/{web}.uses.{db}", uses, other)

    deleted = await svc.client.delete(f"/v1/apps/{db}", headers=owner)
    assert deleted.status_code == 200, deleted.text
    assert (await svc.client.get(f"/v1/relations/{web}.uses.{db}")).status_code == 404
    history = (await svc.client.get(f"/v1/history/relation/{web}.uses.{db}")).json()
    assert [(r["op"], r["actor"]) for r in history["revisions"]] == [
        ("create", "mallory"),
        ("delete", "alice"),
    ]
    assert history["revisions"][1]["change_set_id"] == deleted.json()["change_set_id"]
    changed = await read_events(svc, "cmdb-changed", web)
    assert [(i.id, i.op) for e in changed for i in e.data.items if i.type == "relation"] == [
        (f"{web}.uses.{db}", "create"),
        (f"{web}.uses.{db}", "delete"),
    ]

    # A relation of the owner's own team still has to go first.
    mine = {
        "type": "depends_on",
        "source": {"kind": "application", "id": api},
        "target": {"kind": "application", "id": web},
    }
    await put(svc, f"/v1/relations/{api}.uses.{web}", mine, owner)
    refused = await svc.client.delete(f"/v1/apps/{api}", headers=owner)
    assert refused.status_code == 409 and f"{api}.uses.{web}" in refused.json()["detail"]


async def test_a_recreated_application_starts_without_the_old_ones_state(
    svc: RunningService,
) -> None:
    old_team, new_team, other_team = unique("team"), unique("team"), unique("team")
    old, new = svc.auth("alice", f"team:{old_team}"), svc.auth("carol", f"team:{new_team}")
    other = svc.auth("mallory", f"team:{other_team}")
    app, web = unique("app"), unique("web")
    await put(svc, f"/v1/apps/{app}", {"owner_team": old_team}, old)
    await put(svc, f"/v1/apps/{app}/spec", SPEC, old)
    await put(svc, f"/v1/apps/{app}/spec", SPEC | {"version": "1.1.0"}, old)
    await put(svc, f"/v1/apps/{web}", {"owner_team": other_team}, other)
    uses = {
        "type": "depends_on",
        "source": {"kind": "application", "id": web},
        "target": {"kind": "application", "id": app},
    }
    await put(svc, f"/v1/relations/{web}.uses.{app}", uses, other)
    dropped = await svc.client.delete(f"/v1/relations/{web}.uses.{app}", headers=other)
    await put(svc, f"/v1/relations/{web}.uses.{app}", uses, other)
    assert (await svc.client.delete(f"/v1/apps/{app}", headers=old)).status_code == 200

    # Reverting a change set of the old application's relations cannot point one at nothing.
    dangling = await svc.client.post(
        f"/v1/change-sets/{dropped.json()['change_set_id']}/revert",
        params={"force": "true"},
        headers=other,
    )
    assert dangling.status_code == 409, dangling.text
    assert f"application {app!r} does not exist" in dangling.json()["detail"]

    await put(svc, f"/v1/apps/{app}", {"owner_team": new_team}, new)
    assert (await svc.client.get(f"/v1/apps/{app}/spec")).status_code == 404
    assert (await svc.client.get(f"/v1/apps/{app}/dependents")).json() == []
    assert (await svc.client.get(f"/v1/apps/{app}/spec/revisions")).json() == []

    # Its first spec is numbered after the old ones, so its change request is a new one.
    first = await put(svc, f"/v1/apps/{app}/spec", SPEC, new)
    assert first["change_request_id"] == f"cmdb/{app}/spec-3/deploy"
    revisions = (await svc.client.get(f"/v1/apps/{app}/spec/revisions")).json()
    assert [(r["revision"], r["actor"]) for r in revisions] == [(3, "carol")]


async def test_a_revert_that_would_leave_an_item_referring_to_nothing_is_refused(
    svc: RunningService,
) -> None:
    team = unique("team")
    owner = svc.auth("alice", f"team:{team}")
    app = unique("app")
    created = await put(svc, f"/v1/apps/{app}", {"owner_team": team}, owner)
    _, zone, pool = await seed_zone(svc)
    host = unique("host")
    await put(svc, f"/v1/hosts/{host}", host_body(zone, pool), infra_token(svc))
    instance = {
        "app_id": app,
        "version": "1.0.0",
        "host_id": host,
        "zone_id": zone,
        "endpoint": "127.0.0.1:9",
        "started_at": T0.isoformat(),
    }
    await put(svc, f"/v1/instances/{app}-0", instance, owner)

    refused = await svc.client.post(
        f"/v1/change-sets/{created['change_set_id']}/revert", headers=owner
    )
    assert refused.status_code == 409, refused.text
    assert f"instance '{app}-0'" in refused.json()["detail"]
    assert (await svc.client.get(f"/v1/apps/{app}")).status_code == 200


async def test_a_real_prometheus_discovers_ready_instances_through_the_sd_endpoint(
    svc: RunningService, tmp_path: Path
) -> None:
    binary = shutil.which("prometheus")
    assert binary, "needs the Debian package `prometheus` (apt-get install prometheus)"
    app, team = unique("app"), unique("team")
    owner = svc.auth("alice", f"team:{team}")
    await put(svc, f"/v1/apps/{app}", {"owner_team": team}, owner)
    _, zone, pool = await seed_zone(svc)
    host = unique("host")
    await put(svc, f"/v1/hosts/{host}", host_body(zone, pool), infra_token(svc))
    for n, state in enumerate(("ready", "starting")):
        instance = {
            "app_id": app,
            "version": "1.0.0",
            "host_id": host,
            "zone_id": zone,
            "endpoint": f"127.0.0.1:{free_port() if n else 9}",
            "status": state,
            "started_at": T0.isoformat(),
            "labels": {"team": team},
        }
        await put(svc, f"/v1/instances/{app}-{n}", instance, owner)

    cmdb_port, prom_port = free_port(), free_port()
    server = uvicorn.Server(
        uvicorn.Config(svc.app, host="127.0.0.1", port=cmdb_port, lifespan="off", log_config=None)
    )
    serving = asyncio.create_task(server.serve())
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1h}\n"
        "scrape_configs:\n"
        "  - job_name: cmdb\n"
        "    http_sd_configs:\n"
        f"      - url: http://127.0.0.1:{cmdb_port}/v1/sd/prometheus\n"
        "        refresh_interval: 1s\n"
    )
    prometheus = await asyncio.create_subprocess_exec(
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{prom_port}",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        async def targets() -> list[dict[str, Any]]:
            try:
                async with httpx.AsyncClient(timeout=2) as client:
                    answer = await client.get(f"http://127.0.0.1:{prom_port}/api/v1/targets")
            except httpx.HTTPError:
                return []
            if answer.status_code != 200:  # 503 while Prometheus starts
                return []
            found = answer.json()["data"]["activeTargets"]
            return [t for t in found if t["discoveredLabels"].get("app") == app]

        async def discovered() -> bool:
            return bool(await targets())

        await until(discovered, timeout=30)
        (target,) = await targets()
        assert target["discoveredLabels"]["__address__"] == "127.0.0.1:9"
        assert target["labels"]["instance"] == f"{app}-0"
        assert (target["labels"]["zone"], target["labels"]["team"]) == (zone, team)
    finally:
        prometheus.terminate()
        await asyncio.wait_for(prometheus.wait(), 10)
        server.should_exit = True
        await serving


def _cursor(raw: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")


async def test_nul_characters_oversize_strings_and_crafted_cursors_get_4xx(
    svc: RunningService,
) -> None:
    app, team = unique("app"), unique("team")
    owner = svc.auth("alice", f"team:{team}")
    await put(svc, f"/v1/apps/{app}", {"owner_team": team}, owner)
    _, zone, pool = await seed_zone(svc)
    host = unique("host")
    await put(svc, f"/v1/hosts/{host}", host_body(zone, pool), infra_token(svc))
    client = svc.client

    # NUL in the path or the query: PostgreSQL cannot store or compare it.
    for method, url, params in (
        ("GET", "/v1/apps/a%00b", {}),
        ("GET", "/v1/apps/a%00b", {"as_of": T0.isoformat()}),
        ("DELETE", "/v1/apps/a%00b", {}),
        ("GET", "/v1/apps", {"owner_team": "a\x00"}),
        ("GET", "/v1/hosts", {"address": "a\x00"}),
        ("GET", "/v1/search", {"q": "a\x00"}),
        ("GET", "/v1/history/application/a%00", {}),
        ("GET", "/v1/change-sets/a%00", {}),
        ("POST", "/v1/change-sets/a%00/revert", {}),
        ("GET", "/v1/hosts/a%00/instances", {}),
        ("GET", "/v1/blast-radius", {"zone": "a\x00"}),
    ):
        answer = await client.request(method, url, params=params, headers=owner)
        assert answer.status_code == 400, (method, url, params, answer.text)
        assert "NUL" in answer.json()["detail"]

    # NUL anywhere in a body, and strings longer than what the cmdb keeps for them.
    spec = SPEC | {"artifact": "sha256:\x00"}
    nul_spec = await client.put(f"/v1/apps/{app}/spec", json=spec, headers=owner)
    assert nul_spec.status_code == 422, nul_spec.text
    assert ["body", "artifact"] in [p["loc"] for p in nul_spec.json()["detail"]]
    huge = await client.put(
        f"/v1/apps/{app}/spec", json=SPEC | {"artifact": "x" * 100_000}, headers=owner
    )
    assert huge.status_code == 422 and huge.json()["detail"][0]["loc"] == ["body", "artifact"]
    instance = {
        "app_id": app,
        "version": "1" * 1000,
        "host_id": host,
        "zone_id": zone,
        "endpoint": "127.0.0.1:9",
        "started_at": T0.isoformat(),
    }
    long_version = await client.put(f"/v1/instances/{app}-0", json=instance, headers=owner)
    assert long_version.status_code == 422, long_version.text
    nul_address = await client.put(
        f"/v1/hosts/{unique('host')}",
        json=host_body(zone, pool, address="10.0.0.1\x00"),
        headers=infra_token(svc),
    )
    assert nul_address.status_code == 422, nul_address.text
    nul_row = {"kind": "host", "id": unique("host")} | host_body(zone, pool, address="a\x00")
    imported = await client.post(
        "/v1/import", content=json.dumps(nul_row), headers=infra_token(svc)
    )
    assert imported.status_code == 422, imported.text
    assert imported.json()["errors"][0]["loc"] == ["address"]

    # A token whose subject is longer than the history's actor column, or holds a NUL.
    for subject in ("x" * 400, "ali\x00ce"):
        refused = await client.put(
            f"/v1/apps/{unique('app')}",
            json={"owner_team": team},
            headers=svc.auth(subject, f"team:{team}"),
        )
        assert refused.status_code == 400, refused.text
        assert "subject" in refused.json()["detail"]

    # Cursors that decode, but to values the sort's column cannot be compared with.
    for collection, sort, raw in (
        ("hosts", "cpu_millis", ["cpu_millis", "abc", "x"]),
        ("hosts", "cpu_millis", ["cpu_millis", {"a": 1}, "x"]),
        ("hosts", "cpu_millis", ["cpu_millis", True, "x"]),
        ("hosts", "cpu_millis", ["cpu_millis", 10**400, "x"]),
        ("apps", "id", ["id", 5, "x"]),
        ("apps", "id", ["id", [1], [2]]),
        ("apps", "id", ["id", "a\x00", "x"]),
        ("apps", "-id", ["-id", "a", "b" * 1000]),
    ):
        answer = await client.get(
            f"/v1/{collection}", params={"sort": sort, "cursor": _cursor(raw)}
        )
        assert answer.status_code == 400, (raw, answer.text)
    not_a_number = base64.urlsafe_b64encode(b'["cpu_millis", NaN, "x"]').decode()
    nan = await client.get("/v1/hosts", params={"sort": "cpu_millis", "cursor": not_a_number})
    assert nan.status_code == 400, nan.text
