"""Elastic's budget, quota, replica and outcome metrics: what `/metrics` serves is what the
database holds, so a restarted process (a fresh collector) shows the same values."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from elastic.cmdb import Host, InMemoryCmdb
from elastic.config import Settings
from elastic.main import MIGRATIONS, create_app
from elastic.metrics import stored_state_reader
from ooda.events.contracts import DeployDone, InstanceRef, Payload, ScaleDecided
from ooda.metrics import StoredStateMetrics
from ooda.testing import Infra, RunningService, running_service, unique

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(families: Any) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in families
        for s in family.samples
        if s.name.startswith(("ooda_elastic_", "ooda_budget_", "ooda_quota_"))
    }


async def scraped(svc: RunningService) -> Samples:
    return samples(text_string_to_metric_families((await svc.client.get("/metrics")).text))


async def publish(svc: RunningService, payload: Payload) -> None:
    rt = svc.app.state.runtime
    async with rt.sessions() as session, session.begin():
        rt.outbox.add(session, payload)


def key(metric: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return metric, frozenset(labels.items())


async def test_metrics_show_the_stored_budget_quota_replicas_and_held_decisions(
    infra: Infra,
) -> None:
    app, team = unique("app"), unique("team")
    cmdb = InMemoryCmdb(
        teams={app: team},
        hosts=[
            Host(id=f"host-{z}", zone_id=f"zone-{z}", pool_id="general", cpu_millis=4000,
                 memory_mib=8192)
            for z in "ab"
        ],
    )  # fmt: skip
    async with running_service(
        infra, "elastic", Settings, lambda s: create_app(s, cmdb=cmdb), MIGRATIONS
    ) as svc:
        owner, ops = svc.auth("alice", f"team:{team}"), svc.auth("ops", "infra")
        policy = {"team": team, "min_replicas": 1, "max_replicas": 10, "max_step_up": 10}
        for url, body, headers in (
            (f"/v1/apps/{app}/policy", policy, owner),
            (f"/v1/teams/{team}/budget", {"limit": 0, "period": "day"}, ops),
            (f"/v1/quotas/{team}/pool/general", {"cpu_millis": 8000, "memory_mib": 8192}, ops),
        ):
            assert (await svc.client.put(url, json=body, headers=headers)).status_code == 200
        now = datetime.now(UTC)
        instances = [
            InstanceRef(id=f"{app}-{z}", version="1.0.0", host=f"host-{z}", zone=f"zone-{z}",
                        endpoint="http://127.0.0.1:9000", status="ready")
            for z in "ab"
        ]  # fmt: skip
        await publish(
            svc,
            DeployDone(
                app=app, change_id=unique("chg"), request_id=unique("req"), kind="deploy",
                outcome="succeeded", version="1.0.0", replicas=2, instances=instances,
                sequence=1, started_at=now - timedelta(seconds=30), finished_at=now,
            ),
        )  # fmt: skip
        # With no budget left, a scale-up from 2 to 6 is held at 2 by the budget rule.
        await publish(
            svc,
            ScaleDecided(
                app=app, decision_id=unique("dec"), policy="predictive", current_replicas=2,
                desired_replicas=6, reason="forecast needs 6",
            ),
        )  # fmt: skip
        want = {
            key("ooda_elastic_app_replicas", team=team, app=app): 2,
            key("ooda_elastic_app_max_replicas", team=team, app=app): 10,
            key("ooda_budget_limit_replica_hours", team=team, period="day"): 0,
            key("ooda_quota_cpu_millis", team=team, scope="pool", name="general"): 8000,
            # two live instances at the policy's default request of 500 millicores
            key("ooda_quota_used_cpu_millis", team=team, scope="pool", name="general"): 1000,
            key("ooda_elastic_outcomes_total", team=team, action="hold"): 1,
            key("ooda_elastic_outcomes_total", team=team, action="scale_up"): 0,
            key("ooda_elastic_clips_total", team=team, rule="budget"): 1,
            key("ooda_elastic_clips_total", team=team, rule="cooldown"): 0,
            key("ooda_elastic_holds_total", team=team, rule="budget"): 1,
            key("ooda_elastic_holds_total", team=team, rule="cooldown"): 0,
        }
        seen: Samples = {}
        async with asyncio.timeout(30):
            while any(seen.get(k) != v for k, v in want.items()):
                await asyncio.sleep(0.5)
                seen = await scraped(svc)
        used = seen[key("ooda_budget_used_replica_hours", team=team)]
        committed = seen[key("ooda_budget_committed_replica_hours", team=team)]
        assert used >= 0
        # Two replicas until the day ends (at least a little of it is left).
        assert committed > used

        # A restarted process reads the same values from the same database.
        restarted = StoredStateMetrics("budget and capacity", stored_state_reader(cmdb))
        await restarted.refresh(svc.app.state.runtime)
        again = samples(restarted.collect())
        for k, v in want.items():
            assert again[k] == v, k
        assert again[key("ooda_budget_used_replica_hours", team=team)] >= used
