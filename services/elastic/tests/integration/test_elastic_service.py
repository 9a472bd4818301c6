"""The elastic service in-process on real Kafka and PostgreSQL, with an in-memory CMDB.

Events reach it through its own outbox, as another service's relay would publish them; what it
requests is read back from the real `change-requested` topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer

from elastic.cmdb import AppSpec, CmdbUnavailable, Host, InMemoryCmdb
from elastic.config import Settings
from elastic.domain import period_bounds
from elastic.main import MIGRATIONS, create_app
from ooda.bus import KafkaConnection
from ooda.events import Event, decode
from ooda.events.contracts import (
    ChangeKind,
    ChangeRequested,
    DeployDone,
    InstanceRef,
    Payload,
    ScaleDecided,
)
from ooda.testing import Infra, RunningService, running_service, unique

pytestmark = pytest.mark.integration

ZONES = ("zone-a", "zone-b", "zone-c")


class ChangeLog:
    """Every record on one topic, read from the beginning in the background."""

    def __init__(self, kafka: KafkaConnection, topic: str) -> None:
        self.consumer = AIOKafkaConsumer(topic, **kafka.options(), auto_offset_reset="earliest")
        self.events: list[Event] = []
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for record in self.consumer:
            self.events.append(decode(record.key, record.headers, record.value))

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.consumer.stop()

    def changes(self, app: str) -> list[ChangeRequested]:
        found = [e.data for e in self.events if e.subject == app]
        return [c for c in found if isinstance(c, ChangeRequested)]

    async def wait_for(
        self, app: str, count: int = 1, timeout: float = 30
    ) -> list[ChangeRequested]:
        async with asyncio.timeout(timeout):
            while len(self.changes(app)) < count:
                await asyncio.sleep(0.1)
        return self.changes(app)


@dataclass
class Elastic:
    svc: RunningService
    cmdb: InMemoryCmdb
    changes: ChangeLog

    async def publish(self, payload: Payload) -> str:
        """Publish an event through the service's outbox, as its producer would; its id."""
        rt = self.svc.app.state.runtime
        async with rt.sessions() as session, session.begin():
            return rt.outbox.add(session, payload).id

    async def outcomes(self, app: str, count: int = 1, timeout: float = 30) -> list[Any]:
        async with asyncio.timeout(timeout):
            while True:
                found = (await self.svc.client.get(f"/v1/apps/{app}/outcomes")).json()
                if len(found) >= count:
                    return list(found)
                await asyncio.sleep(0.1)

    async def applied(self, app: str, sequence: int, timeout: float = 30) -> dict[str, Any]:
        """Wait until the service has applied the app's deploy-done of `sequence`."""
        # deploy-done and scale-decided travel on different topics, so in no guaranteed order.
        async with asyncio.timeout(timeout):
            while True:
                response = await self.svc.client.get(f"/v1/apps/{app}/state")
                if response.status_code == 200 and response.json()["sequence"] >= sequence:
                    return dict(response.json())
                await asyncio.sleep(0.1)

    async def put_policy(self, app: str, team: str, **policy: Any) -> None:
        self.cmdb.teams.setdefault(app, team)  # the CMDB knows the app and its owner team
        body = {"team": team, "min_replicas": 1, "max_replicas": 10, "max_step_up": 10, **policy}
        response = await self.svc.client.put(
            f"/v1/apps/{app}/policy", json=body, headers=self.svc.auth("alice", f"team:{team}")
        )
        assert response.status_code == 200, response.text


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def elastic(infra: Infra) -> AsyncIterator[Elastic]:
    cmdb = InMemoryCmdb(
        hosts=[
            Host.model_validate(
                {
                    "id": f"host-{zone[-1]}{n}",
                    "zone_id": zone,
                    "pool_id": "general",
                    "cpu_millis": 4000,
                    "memory_mib": 8192,
                    "status": "up",
                    "allocated": {"cpu_millis": 1000, "memory_mib": 1024},
                }
            )
            for zone in ZONES
            for n in (1, 2)
        ]
        + [
            Host.model_validate(
                {
                    "id": "host-d1",
                    "zone_id": "zone-d",
                    "pool_id": "general",
                    "cpu_millis": 4000,
                    "memory_mib": 8192,
                    "status": "down",
                }
            )
        ]
    )
    async with running_service(
        infra, "elastic", Settings, lambda s: create_app(s, cmdb=cmdb), MIGRATIONS
    ) as svc:
        changes = ChangeLog(infra.kafka(), svc.prefix + "change-requested")
        await changes.start()
        try:
            yield Elastic(svc, cmdb, changes)
        finally:
            await changes.stop()


def decided(
    app: str, desired: int, current: int = 0, decision_id: str | None = None
) -> ScaleDecided:
    return ScaleDecided(
        app=app,
        decision_id=decision_id or unique("dec"),
        policy="predictive",
        current_replicas=current,
        desired_replicas=desired,
        reason=f"forecast needs {desired}",
    )


def deployed(
    app: str,
    placement: dict[str, int],
    sequence: int,
    finished_at: datetime,
    kind: ChangeKind = "scale",
    ready: bool = True,
) -> DeployDone:
    instances = [
        InstanceRef(
            id=f"{app}-{zone}-{n}",
            version="1.0.0",
            host=f"host-{zone[-1]}1",
            zone=zone,
            endpoint=f"http://127.0.0.1:{9000 + n}",
            status="ready" if ready else "starting",
        )
        for zone, count in placement.items()
        for n in range(count)
    ]
    return DeployDone(
        app=app,
        change_id=unique("chg"),
        request_id=unique("req"),
        kind=kind,
        outcome="succeeded",
        version="1.0.0",
        replicas=len(instances),
        instances=instances,
        sequence=sequence,
        started_at=finished_at - timedelta(seconds=30),
        finished_at=finished_at,
    )


async def test_a_decision_within_policy_becomes_one_change_spread_over_zones(
    elastic: Elastic,
) -> None:
    app, team = unique("app"), unique("team")
    await elastic.put_policy(app, team)
    decision = decided(app, 6)
    event_id = await elastic.publish(decision)

    (change,) = await elastic.changes.wait_for(app)
    assert change.kind == "scale"
    assert change.target.replicas == 6
    assert change.target.placement == {"zone-a": 2, "zone-b": 2, "zone-c": 2}
    assert change.request_id == f"elastic/{app}/{decision.decision_id}"
    assert change.cause == event_id
    assert change.requested_by == "service:elastic"
    assert "within policy" in change.reason
    (outcome,) = await elastic.outcomes(app)
    assert outcome["action"] == "scale_up"
    assert outcome["change_request_id"] == change.request_id


async def test_a_decision_above_max_is_clipped_and_the_reason_is_recorded(
    elastic: Elastic,
) -> None:
    app, team = unique("app"), unique("team")
    await elastic.put_policy(app, team, max_replicas=5)
    await elastic.publish(decided(app, 9))

    (change,) = await elastic.changes.wait_for(app)
    assert change.target.replicas == 5
    assert "bounds 9->5" in change.reason
    (outcome,) = await elastic.outcomes(app)
    assert outcome["requested_replicas"] == 9
    assert outcome["final_replicas"] == 5
    assert [c["rule"] for c in outcome["clipped_by"]] == ["bounds"]
    assert outcome["clipped_by"][0]["reason"] == "policy allows 1..5 replicas"


async def test_a_decision_during_cooldown_holds_and_requests_nothing(elastic: Elastic) -> None:
    app, team = unique("app"), unique("team")
    await elastic.put_policy(app, team, scale_up_cooldown=600)
    await elastic.publish(deployed(app, {"zone-a": 1, "zone-b": 1}, 1, datetime.now(UTC)))
    await elastic.applied(app, 1)
    await elastic.publish(decided(app, 4, current=2))

    (outcome,) = await elastic.outcomes(app)
    assert outcome["action"] == "hold"
    assert outcome["current_replicas"] == 2
    assert outcome["clipped_by"][0]["rule"] == "cooldown"
    assert "scale-up cooldown is 600s" in outcome["hold_reason"]
    assert outcome["change_request_id"] is None
    await asyncio.sleep(1.0)  # the relay polls every 0.2 s: a change would be out by now
    assert elastic.changes.changes(app) == []


async def test_an_exhausted_team_budget_refuses_the_scale_up_but_keeps_min(
    elastic: Elastic,
) -> None:
    app, team = unique("app"), unique("team")
    await elastic.put_policy(app, team, min_replicas=2)
    response = await elastic.svc.client.put(
        f"/v1/teams/{team}/budget",
        json={"limit": 0, "period": "month"},
        headers=elastic.svc.auth("ops", "infra"),
    )
    assert response.status_code == 200, response.text
    await elastic.publish(decided(app, 8))

    (change,) = await elastic.changes.wait_for(app)
    assert change.target.replicas == 2
    (outcome,) = await elastic.outcomes(app)
    budget_clip = next(c for c in outcome["clipped_by"] if c["rule"] == "budget")
    assert budget_clip["to_replicas"] == 2
    assert f"team {team} has 0.0 replica-hours left" in budget_clip["reason"]
    assert "kept at min replicas 2" in budget_clip["reason"]


async def test_a_zone_quota_limits_placement_and_the_spread_rule_says_why(
    elastic: Elastic,
) -> None:
    app, team = unique("app"), unique("team")
    await elastic.put_policy(app, team)
    response = await elastic.svc.client.put(
        f"/v1/quotas/{team}/zone/zone-a",
        json={"cpu_millis": 500, "memory_mib": 512},
        headers=elastic.svc.auth("ops", "infra"),
    )
    assert response.status_code == 200, response.text
    await elastic.publish(decided(app, 6))

    (change,) = await elastic.changes.wait_for(app)
    assert change.target.placement == {"zone-a": 1, "zone-b": 2, "zone-c": 2}
    (outcome,) = await elastic.outcomes(app)
    assert outcome["final_replicas"] == 5
    (clip,) = outcome["clipped_by"]
    assert clip["rule"] == "spread"
    assert clip["reason"] == "zone zone-a is full at 1 and max skew is 1"


async def test_instances_in_a_failed_zone_are_re_placed_in_the_healthy_zones(
    elastic: Elastic,
) -> None:
    app, team = unique("app"), unique("team")
    await elastic.put_policy(app, team)
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    await elastic.publish(deployed(app, {"zone-d": 2, "zone-b": 1}, 1, an_hour_ago, kind="deploy"))
    await elastic.applied(app, 1)
    await elastic.publish(decided(app, 3, current=3))

    (change,) = await elastic.changes.wait_for(app)
    assert change.target.replicas == 3
    assert change.target.placement == {"zone-a": 1, "zone-b": 1, "zone-c": 1}
    (outcome,) = await elastic.outcomes(app)
    assert outcome["current_replicas"] == 1
    assert "zone zone-d has no host up: its 2 instances are re-placed" in outcome["notes"]


async def test_a_decision_while_the_cmdb_is_down_holds_with_the_reason(
    elastic: Elastic, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, team = unique("app"), unique("team")
    await elastic.put_policy(app, team)

    async def unreachable(status: str | None = "up") -> list[Host]:
        raise CmdbUnavailable("CMDB at http://cmdb unreachable: connection refused")

    monkeypatch.setattr(elastic.cmdb, "hosts", unreachable)
    await elastic.publish(decided(app, 3))

    (outcome,) = await elastic.outcomes(app)
    assert outcome["action"] == "hold"
    assert outcome["team"] == team
    assert "CMDB at http://cmdb unreachable" in outcome["hold_reason"]
    assert outcome["change_request_id"] is None


async def test_a_redelivered_decision_publishes_nothing_new(elastic: Elastic) -> None:
    app, team = unique("app"), unique("team")
    await elastic.put_policy(app, team)
    decision = decided(app, 3)
    await elastic.publish(decision)
    await elastic.publish(decision)  # the same decision again, under a new event id
    # Same key, same partition: once this later decision has an outcome, so has the replay.
    later = decided(app, 4)
    await elastic.publish(later)

    outcomes = await elastic.outcomes(app, count=2)
    assert sorted(o["decision_id"] for o in outcomes) == sorted(
        [decision.decision_id, later.decision_id]
    )
    await asyncio.sleep(1.0)
    assert [c.request_id for c in elastic.changes.changes(app)] == [
        f"elastic/{app}/{decision.decision_id}"
    ]


async def test_deploy_done_updates_state_and_budget_usage_once_even_when_replayed(
    elastic: Elastic,
) -> None:
    app, team = unique("app"), unique("team")
    await elastic.put_policy(app, team)
    headers = elastic.svc.auth("ops", "infra")
    assert (
        await elastic.svc.client.put(
            f"/v1/teams/{team}/budget", json={"limit": 1000, "period": "month"}, headers=headers
        )
    ).status_code == 200
    now = datetime.now(UTC)
    started = max(now - timedelta(hours=1), period_bounds("month", now)[0])
    older = deployed(app, {"zone-c": 7}, 4, started - timedelta(seconds=1))
    report = deployed(app, {"zone-a": 2, "zone-b": 1}, 5, started)
    await elastic.publish(report)
    await elastic.publish(report)  # replayed under a new event id
    await elastic.publish(older)  # a late report of an older sequence
    # Same key, same partition: once sequence 6 is in, everything before it was applied.
    await elastic.publish(deployed(app, {"zone-a": 2, "zone-b": 1}, 6, now, kind="deploy"))

    state = await elastic.applied(app, 6)
    assert state["replicas_by_zone"] == {"zone-a": 2, "zone-b": 1}

    budget = (await elastic.svc.client.get(f"/v1/teams/{team}/budget")).json()
    hours = (datetime.now(UTC) - started) / timedelta(hours=1)
    # 7 replicas for the second before the newer report, then 3 replicas since it.
    expected = 3 * hours + (7 / 3600 if started > period_bounds("month", now)[0] else 0)
    assert budget["used_replica_hours"] == pytest.approx(expected, abs=0.01)
    assert budget["remaining_replica_hours"] == pytest.approx(1000 - expected, abs=0.01)
    assert budget["used_by_app"][app] == pytest.approx(expected, abs=0.01)


async def test_evacuating_a_failed_zone_plans_batches_and_publishes_migrate_changes(
    elastic: Elastic,
) -> None:
    web, api, db, team = unique("web"), unique("api"), unique("db"), unique("team")
    await elastic.put_policy(web, team, min_replicas=2)
    await elastic.put_policy(api, team, min_replicas=1)
    await elastic.put_policy(db, team, min_replicas=2)
    now = datetime.now(UTC) - timedelta(hours=1)
    await elastic.publish(deployed(web, {"zone-d": 2, "zone-b": 1}, 1, now))
    await elastic.publish(deployed(api, {"zone-d": 1, "zone-c": 1}, 1, now))
    await elastic.publish(deployed(db, {"zone-d": 2}, 1, now))
    for app in (web, api, db):
        await elastic.applied(app, 1)

    response = await elastic.svc.client.post(
        "/v1/migrations",
        json={"source": {"kind": "zone", "name": "zone-d"}, "max_batch_size": 2},
        headers=elastic.svc.auth("ops", "infra"),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    moves = [m for b in body["plan"]["batches"] for m in b["moves"] if m["app_id"] in (web, api)]
    assert sorted(m["instance_id"] for m in moves) == sorted(
        [f"{web}-zone-d-0", f"{web}-zone-d-1", f"{api}-zone-d-0"]
    )
    assert all(m["to_zone"] != "zone-d" for m in moves)
    assert all(len(b["moves"]) <= 2 for b in body["plan"]["batches"])
    unmoved = [u for u in body["plan"]["unmoved"] if u["app_id"] == db]
    assert len(unmoved) == 2
    assert "fewer than 2 ready instances" in unmoved[0]["reason"]
    assert set(body["change_requests"]) >= {web, api}
    assert db not in body["change_requests"]

    (web_change,) = await elastic.changes.wait_for(web)
    (api_change,) = await elastic.changes.wait_for(api)
    for change, total in ((web_change, 3), (api_change, 2)):
        assert change.kind == "migrate"
        assert change.target.from_zone == "zone-d"
        assert change.target.replicas == total
        assert change.target.placement is not None
        assert "zone-d" not in change.target.placement
        assert change.requested_by == "ops"
        assert change.request_id == body["change_requests"][change.app]
    assert elastic.changes.changes(db) == []


async def test_capacity_shows_free_slots_per_pool_and_zone(elastic: Elastic) -> None:
    response = await elastic.svc.client.get("/v1/capacity?cpu_millis=1000&memory_mib=1024")
    assert response.status_code == 200
    body = response.json()
    assert body["zones"] == {"zone-a": 6, "zone-b": 6, "zone-c": 6}
    assert body["pools"][0] == {
        "zone": "zone-a",
        "pool": "general",
        "hosts": 2,
        "free_cpu_millis": 6000,
        "free_memory_mib": 14336,
        "slots": 6,
    }


async def test_a_policy_is_derived_from_the_cmdb_spec_when_the_app_has_none(
    elastic: Elastic,
) -> None:
    app, team = unique("app"), unique("team")
    elastic.cmdb.teams[app] = team
    elastic.cmdb.specs[app] = AppSpec.model_validate(
        {
            "revision": 3,
            "replicas": {"min": 2, "max": 4, "desired": 2},
            "resources": {"cpu_millis": 250, "memory_mib": 256},
            "scaling": {"target_utilisation": 0.7},
            "budget": {"replica_hours": 5000, "period": "week"},
        }
    )
    await elastic.publish(decided(app, 12))

    (change,) = await elastic.changes.wait_for(app)
    assert change.target.replicas == 4
    policy = (await elastic.svc.client.get(f"/v1/apps/{app}/policy")).json()
    assert policy["source"] == "cmdb-spec"
    assert policy["team"] == team
    assert policy["policy"]["request"] == {"cpu_millis": 250, "memory_mib": 256}
    budget = (await elastic.svc.client.get(f"/v1/teams/{team}/budget")).json()
    assert budget["budget"]["limit"] == 5000
    assert budget["budget"]["period"] == "week"


async def test_a_decision_for_an_unknown_application_is_dead_lettered(
    elastic: Elastic, infra: Infra
) -> None:
    app = unique("ghost")
    event_id = await elastic.publish(decided(app, 3))
    consumer = AIOKafkaConsumer(
        elastic.svc.prefix + "scale-decided.dlq",
        **infra.kafka().options(),
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        async with asyncio.timeout(30):
            async for record in consumer:
                if record.key == app.encode():
                    break
    finally:
        await consumer.stop()
    headers = dict(record.headers)
    assert headers["ce_id"] == event_id.encode()
    assert b"unknown application" in headers["ooda_dlq_error"]


async def test_bad_input_is_refused_with_the_reason(elastic: Elastic) -> None:
    client, team, app = elastic.svc.client, unique("team"), unique("app")
    elastic.cmdb.teams[app] = team
    headers = elastic.svc.auth("alice", f"team:{team}")
    bad_policy = await client.put(
        f"/v1/apps/{app}/policy",
        json={"team": team, "min_replicas": 5, "max_replicas": 2},
        headers=headers,
    )
    assert bad_policy.status_code == 422
    assert "min_replicas 5 is above max_replicas 2" in bad_policy.text
    infra_headers = elastic.svc.auth("ops", "infra")
    negative = await client.put(
        f"/v1/teams/{team}/budget", json={"limit": -1}, headers=infra_headers
    )
    assert negative.status_code == 422
    assert "limit" in negative.text
    unknown_field = await client.put(
        f"/v1/teams/{team}/budget", json={"limit": 1, "currency": "eur"}, headers=infra_headers
    )
    assert unknown_field.status_code == 422
    bad_scope = await client.put(
        f"/v1/quotas/{team}/region/eu",
        json={"cpu_millis": 1, "memory_mib": 1},
        headers=infra_headers,
    )
    assert bad_scope.status_code == 422
    zero_batch = await client.post(
        "/v1/migrations",
        json={"source": {"kind": "zone", "name": "zone-a"}, "max_batch_size": 0},
        headers=infra_headers,
    )
    assert zero_batch.status_code == 422
    same = {"kind": "zone", "name": "zone-a"}
    assert (
        await client.post(
            "/v1/migrations", json={"source": same, "target": same}, headers=infra_headers
        )
    ).status_code == 422
    missing = await client.get(f"/v1/teams/{unique('team')}/budget")
    assert missing.status_code == 404
    assert "has no budget" in missing.json()["detail"]
    assert (await client.get(f"/v1/apps/{unique('app')}/policy")).status_code == 404
    assert (await client.get("/v1/apps/Not_An_App/policy")).status_code == 422


async def test_writes_need_a_token_with_the_right_scope(elastic: Elastic) -> None:
    client, team, app = elastic.svc.client, unique("team"), unique("app")
    elastic.cmdb.teams[app] = team
    policy = {"team": team, "min_replicas": 1, "max_replicas": 3}
    assert (await client.put(f"/v1/apps/{app}/policy", json=policy)).status_code == 401
    bad_token = {"Authorization": f"Bearer {uuid.uuid4().hex}"}
    assert (
        await client.put(f"/v1/apps/{app}/policy", json=policy, headers=bad_token)
    ).status_code == 401
    other = elastic.svc.auth("mallory", "team:other")
    assert (
        await client.put(f"/v1/apps/{app}/policy", json=policy, headers=other)
    ).status_code == 403
    assert (
        await client.put(f"/v1/teams/{team}/budget", json={"limit": 1}, headers=other)
    ).status_code == 403
    owner = elastic.svc.auth("alice", f"team:{team}")
    assert (
        await client.put(f"/v1/apps/{app}/policy", json=policy, headers=owner)
    ).status_code == 200
    # The owner cannot hand its application to a team it does not belong to.
    stolen = {**policy, "team": "other"}
    assert (
        await client.put(f"/v1/apps/{app}/policy", json=stolen, headers=other)
    ).status_code == 403
    quota = {"cpu_millis": 8000, "memory_mib": 8192}
    assert (
        await client.put(f"/v1/quotas/{team}/zone/zone-a", json=quota, headers=owner)
    ).status_code == 403
    migration = {"source": {"kind": "zone", "name": "zone-x"}}
    assert (await client.post("/v1/migrations", json=migration, headers=owner)).status_code == 403
    infra_ok = await client.put(
        f"/v1/quotas/{team}/zone/zone-a", json=quota, headers=elastic.svc.auth("ops", "infra")
    )
    assert infra_ok.status_code == 200
    admin_ok = await client.put(
        f"/v1/quotas/{team}/pool/general", json=quota, headers=elastic.svc.auth("root", "admin")
    )
    assert admin_ok.status_code == 200
    listed = (await client.get(f"/v1/quotas?team={team}")).json()
    assert [(q["scope"], q["name"], q["updated_by"]) for q in listed] == [
        ("pool", "general", "root"),
        ("zone", "zone-a", "ops"),
    ]


async def test_a_budget_for_a_team_the_cmdb_does_not_know_is_refused(elastic: Elastic) -> None:
    team = unique("ghost")
    response = await elastic.svc.client.put(
        f"/v1/teams/{team}/budget",
        json={"limit": 10, "period": "day"},
        headers=elastic.svc.auth("ops", "infra"),
    )
    assert response.status_code == 422
    assert f"unknown team {team!r}" in response.json()["detail"][0]["msg"]


async def test_a_policy_is_authorised_against_the_owner_the_cmdb_names(
    elastic: Elastic, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, app, owner = elastic.svc.client, unique("app"), unique("team")
    elastic.cmdb.teams[app] = owner
    policy = {"min_replicas": 1, "max_replicas": 3}
    mallory = elastic.svc.auth("mallory", "team:other")
    # Naming one's own team in the body does not make another team's application one's own.
    squat = await client.put(
        f"/v1/apps/{app}/policy", json={**policy, "team": "other"}, headers=mallory
    )
    assert squat.status_code == 403, squat.text
    assert f"team:{owner}" in squat.json()["detail"]
    assert (await client.get(f"/v1/apps/{app}/policy")).status_code == 404

    headers = elastic.svc.auth("alice", f"team:{owner}")
    mine = await client.put(f"/v1/apps/{app}/policy", json=policy, headers=headers)
    assert mine.status_code == 200, mine.text
    assert mine.json()["team"] == owner
    # The team recorded with a policy is the CMDB's owner, whatever the body says.
    moved = await client.put(
        f"/v1/apps/{app}/policy", json={**policy, "team": "other"}, headers=headers
    )
    assert moved.status_code == 422
    assert f"owned by team {owner!r}" in moved.json()["detail"][0]["msg"]

    ghost = unique("ghost")
    unknown = await client.put(
        f"/v1/apps/{ghost}/policy", json={**policy, "team": "other"}, headers=mallory
    )
    assert unknown.status_code == 404
    assert f"unknown application {ghost!r}" in unknown.json()["detail"]

    async def unreachable(app: str) -> str | None:
        raise CmdbUnavailable("CMDB at http://cmdb unreachable: connection refused")

    monkeypatch.setattr(elastic.cmdb, "owner_team", unreachable)
    down = await client.put(f"/v1/apps/{app}/policy", json=policy, headers=headers)
    assert down.status_code == 503
    assert "unreachable" in down.json()["detail"]


async def test_budgets_are_set_by_infra_or_admin_not_by_the_team_itself(elastic: Elastic) -> None:
    client, app, team = elastic.svc.client, unique("app"), unique("team")
    await elastic.put_policy(app, team)
    own = await client.put(
        f"/v1/teams/{team}/budget",
        json={"limit": 1_000_000},
        headers=elastic.svc.auth("alice", f"team:{team}"),
    )
    assert own.status_code == 403
    assert (await client.get(f"/v1/teams/{team}/budget")).status_code == 404
    for who, scope in (("ops", "infra"), ("root", "admin")):
        answer = await client.put(
            f"/v1/teams/{team}/budget", json={"limit": 10}, headers=elastic.svc.auth(who, scope)
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["updated_by"] == who


async def test_numbers_past_their_columns_and_text_with_nul_are_refused_with_the_field(
    elastic: Elastic,
) -> None:
    client, team = elastic.svc.client, unique("team")
    infra_headers = elastic.svc.auth("ops", "infra")
    past_bigint = await client.put(
        f"/v1/quotas/{team}/zone/zone-a",
        json={"cpu_millis": 2**63, "memory_mib": 1},
        headers=infra_headers,
    )
    assert past_bigint.status_code == 422, past_bigint.text
    assert [p["loc"] for p in past_bigint.json()["detail"]] == [["body", "cpu_millis"]]
    assert all("type" in p for p in past_bigint.json()["detail"])
    nul = await client.post(
        "/v1/migrations",
        json={"source": {"kind": "zone", "name": "zone\u0000a"}},
        headers=infra_headers,
    )
    assert nul.status_code == 422, nul.text
    huge_cooldown = await client.put(
        f"/v1/apps/{unique('app')}/policy",
        json={
            "team": team,
            "min_replicas": 1,
            "max_replicas": 2,
            "scale_up_cooldown": 10**12,
        },
        headers=elastic.svc.auth("alice", f"team:{team}"),
    )
    assert huge_cooldown.status_code == 422, huge_cooldown.text
    capacity = await client.get("/v1/capacity", params={"cpu_millis": 2**40})
    assert capacity.status_code == 422, capacity.text
