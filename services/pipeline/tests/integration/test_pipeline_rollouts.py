"""The pipeline in-process on real Kafka and PostgreSQL, running real workload processes."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from ooda.events import ChangeRequested, DeployDone
from ooda.events.contracts import ChangeTarget
from ooda.testing import unique

pytestmark = pytest.mark.integration


async def deploy_dones(kit: Any, prefix: str, app: str, count: int) -> list[DeployDone]:
    events = await kit.read_events(
        kit.infra,
        prefix + "deploy-done",
        lambda found: sum(e.data.app == app for e in found) >= count,
    )
    done = [e.data for e in events if e.data.app == app]
    assert all(isinstance(d, DeployDone) for d in done)
    return done  # type: ignore[return-value]


async def answers_ready(endpoint: str) -> bool:
    async with httpx.AsyncClient(trust_env=False) as client:
        return (await client.get(endpoint + "/readyz")).status_code == 200


async def test_a_release_rolls_out_in_zone_spread_batches_and_a_bad_version_rolls_back(
    kit: Any, tmp_path: Path
) -> None:
    app = unique("shop")
    kit.cmdb.add_app(app, owner="shop-team", replicas=3)
    async with kit.pipeline(kit.infra, kit.cmdb, tmp_path) as svc:
        team = svc.auth("ci", "team:shop-team")
        good = await kit.upload(svc.client, team, kit.artifacts.good, "shop.pyz")
        bad = await kit.upload(svc.client, team, kit.artifacts.bad, "shop-bad.pyz")

        first = await kit.request_deploy(svc.client, team, app, "v1", good, {"size": 3}, 3)
        # The second release is asked for at once; it waits for the first to finish.
        second = await kit.request_deploy(svc.client, team, app, "v2", good, {"size": 2}, 6)
        v1 = await kit.wait_for_change(svc.client, first, kit.finished)
        assert v1["state"] == "succeeded", v1["reason"]
        v2 = await kit.wait_for_change(svc.client, second, kit.finished)
        assert v2["state"] == "succeeded", v2["reason"]
        assert v2["started_at"] >= v1["finished_at"]
        assert v2["rollout"]["batches"] >= 3

        third = await kit.request_deploy(svc.client, team, app, "v3", bad, {"size": 2})
        v3 = await kit.wait_for_change(svc.client, third, kit.finished)
        assert v3["state"] == "rolled_back", v3
        assert "not ready" in v3["reason"]

        done = await deploy_dones(kit, svc.prefix, app, 3)
        by_change = {d.change_id: d for d in done}
        released = by_change[v2["id"]]
        assert released.outcome == "succeeded" and released.replicas == 6
        assert {i.version for i in released.instances} == {"v2"}
        assert Counter(i.zone for i in released.instances) == {"z1": 2, "z2": 2, "z3": 2}
        assert all([await answers_ready(i.endpoint) for i in released.instances])
        rolled = by_change[v3["id"]]
        assert rolled.outcome == "rolled_back" and rolled.error
        assert {i.version for i in rolled.instances} == {"v2"} and len(rolled.instances) == 6
        assert [d.sequence for d in done] == sorted(d.sequence for d in done)
        assert len({d.sequence for d in done}) == 3

        live = (await svc.client.get(f"/v1/apps/{app}/instances")).json()
        assert {i["version"] for i in live} == {"v2"}
        assert {i["id"] for i in live} == kit.running_instance_ids(tmp_path)

        # A rollback without a version returns to the one before; a scale-down stops instances.
        for kind, target in (("rollback", {}), ("scale", {"replicas": 2})):
            asked = await svc.client.post(
                "/v1/changes",
                headers=team,
                json={
                    "app": app,
                    "kind": kind,
                    "idempotency_key": unique("k"),
                    "target": target,
                    "batch": {"percent": 50},
                },
            )
            assert asked.status_code == 201, asked.text
            result = await kit.wait_for_change(svc.client, asked.json()["id"], kit.finished)
            assert result["state"] == "succeeded", result["reason"]
        live = (await svc.client.get(f"/v1/apps/{app}/instances")).json()
        assert [i["version"] for i in live] == ["v1", "v1"]
        assert len({i["zone"] for i in live}) == 2
        assert {i["id"] for i in live} == kit.running_instance_ids(tmp_path)


async def test_a_duplicate_change_request_creates_one_change_and_bad_input_is_refused(
    kit: Any, tmp_path: Path
) -> None:
    app = unique("shop")
    kit.cmdb.add_app(app, owner="shop-team")
    async with kit.pipeline(kit.infra, kit.cmdb, tmp_path) as svc:
        rt = svc.app.state.runtime
        # Two deliveries of one request (under different event ids), as elastic might retry.
        request = ChangeRequested(
            app=app,
            request_id=f"elastic/{app}/d1",
            kind="scale",
            target=ChangeTarget(replicas=0),
            requested_by="service:elastic",
        )
        for _ in range(2):
            async with rt.sessions() as session, session.begin():
                rt.outbox.add(session, request)
        async with asyncio.timeout(20):
            while not (await svc.client.get("/v1/changes", params={"app": app})).json()["items"]:
                await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        items = (await svc.client.get("/v1/changes", params={"app": app})).json()["items"]
        assert len(items) == 1 and items[0]["request_id"] == f"elastic/{app}/d1"

        team = svc.auth("ci", "team:shop-team")
        body = {
            "app": app,
            "kind": "scale",
            "idempotency_key": unique("key"),
            "target": {"replicas": 0},
        }
        created = await svc.client.post("/v1/changes", headers=team, json=body)
        repeated = await svc.client.post("/v1/changes", headers=team, json=body)
        assert (created.status_code, repeated.status_code) == (201, 200)
        assert created.json()["id"] == repeated.json()["id"]

        other = svc.auth("mallory", "team:other")
        refused = await svc.client.post(
            "/v1/changes", headers=other, json={**body, "idempotency_key": unique("k")}
        )
        assert refused.status_code == 403
        unknown_app = await svc.client.post(
            "/v1/changes", headers=team, json={**body, "app": unique("nope")}
        )
        assert unknown_app.status_code == 404
        unknown_version = await svc.client.post(
            "/v1/changes",
            headers=team,
            json={**body, "kind": "deploy", "target": {"version": "v9"}},
        )
        assert unknown_version.status_code == 422
        assert "unknown version" in unknown_version.json()["detail"][0]["msg"]
        bad_batch = await svc.client.post(
            "/v1/changes",
            headers=team,
            json={**body, "idempotency_key": unique("k"), "batch": {"size": 1, "percent": 5}},
        )
        assert bad_batch.status_code == 422
        wrong_digest = await svc.client.post(
            "/v1/artifacts", params={"sha256": "0" * 64}, content=kit.artifacts.good, headers=team
        )
        assert wrong_digest.status_code == 422

        # A plan that cannot fit fails at once, with the reason in deploy-done.
        good = await kit.upload(svc.client, team, kit.artifacts.good, "shop.pyz")
        huge = await kit.request_deploy(svc.client, team, app, "v1", good, {"percent": 10}, 500)
        failed = await kit.wait_for_change(svc.client, huge, kit.finished)
        assert failed["state"] == "failed" and "not enough capacity" in failed["reason"]
        events = await kit.read_events(
            kit.infra,
            svc.prefix + "deploy-done",
            lambda found: any(e.data.change_id == failed["id"] for e in found),
        )
        (done,) = [e.data for e in events if e.data.change_id == failed["id"]]
        assert done.outcome == "failed" and "not enough capacity" in (done.error or "")

        # An invalid change-requested event goes to the dead-letter topic with the reason.
        invalid = ChangeRequested(
            app=app,
            request_id=f"cmdb/{app}/spec-9/deploy",
            kind="deploy",
            target=ChangeTarget(),
            requested_by="service:cmdb",
        )
        async with rt.sessions() as session, session.begin():
            rt.outbox.add(session, invalid)
        dead = await kit.read_events(
            kit.infra,
            svc.prefix + "change-requested.dlq",
            lambda found: any(e.data.app == app for e in found),
        )
        assert [e.data.request_id for e in dead if e.data.app == app] == [invalid.request_id]


async def test_an_idempotency_key_belongs_to_its_application(kit: Any, tmp_path: Path) -> None:
    mine, theirs = unique("mine"), unique("theirs")
    kit.cmdb.add_app(mine, owner="team-a")
    kit.cmdb.add_app(theirs, owner="team-b")
    async with kit.pipeline(kit.infra, kit.cmdb, tmp_path) as svc:
        team_a, team_b = svc.auth("a", "team:team-a"), svc.auth("b", "team:team-b")
        # Team A takes the key the CMDB will use for the other team's next deploy...
        cmdb_key = f"cmdb/{theirs}/spec-2/deploy"
        body = {"kind": "scale", "target": {"replicas": 0}, "idempotency_key": cmdb_key}
        squatted = await svc.client.post("/v1/changes", headers=team_a, json={**body, "app": mine})
        assert squatted.status_code == 201, squatted.text
        # ...and asks with another team's key: it gets a change of its own, nothing of theirs.
        their_key = unique("rel")
        their_change = await svc.client.post(
            "/v1/changes",
            headers=team_b,
            json={**body, "app": theirs, "idempotency_key": their_key},
        )
        assert their_change.status_code == 201, their_change.text
        snooped = await svc.client.post(
            "/v1/changes", headers=team_a, json={**body, "app": mine, "idempotency_key": their_key}
        )
        assert snooped.status_code == 201, snooped.text
        assert snooped.json()["app"] == mine
        assert snooped.json()["id"] != their_change.json()["id"]
        # Repeating a key within its own application still returns the existing change.
        again = await svc.client.post("/v1/changes", headers=team_a, json={**body, "app": mine})
        assert (again.status_code, again.json()["id"]) == (200, squatted.json()["id"])

        # The CMDB's request for the other team's app still makes that app's change.
        rt = svc.app.state.runtime
        async with rt.sessions() as session, session.begin():
            rt.outbox.add(
                session,
                ChangeRequested(
                    app=theirs,
                    request_id=cmdb_key,
                    kind="scale",
                    target=ChangeTarget(replicas=0),
                    requested_by="service:cmdb",
                ),
            )
        async with asyncio.timeout(20):
            while True:
                items = (await svc.client.get("/v1/changes", params={"app": theirs})).json()
                if any(i["request_id"] == cmdb_key for i in items["items"]):
                    break
                await asyncio.sleep(0.2)
        mine_items = (await svc.client.get("/v1/changes", params={"app": mine})).json()["items"]
        assert sorted(i["request_id"] for i in mine_items) == sorted([cmdb_key, their_key])


async def test_pause_resume_abort_and_freeze_over_http(kit: Any, tmp_path: Path) -> None:
    app = unique("shop")
    kit.cmdb.add_app(app, owner="shop-team")
    async with kit.pipeline(kit.infra, kit.cmdb, tmp_path) as svc:
        team = svc.auth("ci", "team:shop-team")
        admin = svc.auth("root", "admin")
        good = await kit.upload(svc.client, team, kit.artifacts.good, "shop.pyz")

        assert (
            await svc.client.put("/v1/freeze", headers=team, json={"reason": "x"})
        ).status_code == 403
        frozen = await svc.client.put("/v1/freeze", headers=admin, json={"reason": "black friday"})
        assert frozen.status_code == 200
        canary = {"size": 1, "canary": {"instances": 1, "resume": "manual"}}
        change_id = await kit.request_deploy(svc.client, team, app, "v1", good, canary, 5)
        waiting = await kit.wait_for_change(
            svc.client, change_id, lambda c: "frozen" in c["reason"]
        )
        assert waiting["state"] == "pending" and "black friday" in waiting["reason"]
        assert (await svc.client.delete("/v1/freeze", headers=admin)).status_code == 200

        paused = await kit.wait_for_change(svc.client, change_id, lambda c: c["state"] == "paused")
        assert paused["reason"] == "canary batch succeeded"
        assert len((await svc.client.get(f"/v1/apps/{app}/instances")).json()) == 1
        resumed = await svc.client.post(f"/v1/changes/{change_id}/resume", headers=team)
        assert resumed.status_code == 200
        await kit.wait_for_change(svc.client, change_id, lambda c: c["state"] == "running")
        paused_again = await svc.client.post(
            f"/v1/changes/{change_id}/pause", headers=team, json={"reason": "look at it"}
        )
        assert paused_again.status_code == 200
        aborted = await svc.client.post(
            f"/v1/changes/{change_id}/abort", headers=team, json={"reason": "enough"}
        )
        assert aborted.status_code == 200
        result = await kit.wait_for_change(svc.client, change_id, kit.finished)
        assert result["state"] == "aborted" and result["reason"] == "abort requested by ci: enough"
        again = await svc.client.post(f"/v1/changes/{change_id}/resume", headers=team)
        assert again.status_code == 409

        rollback = await svc.client.post(f"/v1/changes/{change_id}/rollback", headers=team)
        assert rollback.status_code == 200
        undone = await kit.wait_for_change(svc.client, change_id, kit.finished)
        assert undone["state"] == "rolled_back"
        assert (await svc.client.get(f"/v1/apps/{app}/instances")).json() == []
        assert kit.running_instance_ids(tmp_path) == set()

        progressed = await kit.read_events(
            kit.infra,
            svc.prefix + "change-progressed",
            lambda found: any(e.data.state == "rolled_back" for e in found),
        )
        mine = [e.data for e in progressed if e.data.change_id == change_id]
        states = [p.state for p in mine]
        assert states[0] == "pending" and states[-1] == "rolled_back"
        assert {"planned", "running", "paused", "aborted", "rolling_back"} <= set(states)
        assert any("black friday" in p.message for p in mine)
