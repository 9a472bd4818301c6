"""Instances that die outside any change are replaced; a change's events stay in its trace."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from ooda.events import ChangeRequested, DeployDone
from ooda.events.contracts import ChangeTarget
from ooda.telemetry import context_from, trace_id_of, tracer
from ooda.testing import unique

pytestmark = pytest.mark.integration

KNOWN_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def pid_of(data_dir: Path, instance_id: str) -> int:
    record = data_dir / "instances" / instance_id / "instance.json"
    return int(json.loads(record.read_text())["pid"])


async def test_an_instance_killed_outside_any_change_is_replaced_in_another_zone(
    kit: Any, tmp_path: Path
) -> None:
    app = unique("shop")
    kit.cmdb.add_app(app, owner="shop-team", replicas=2)
    async with kit.pipeline(kit.infra, kit.cmdb, tmp_path) as svc:
        team = svc.auth("ci", "team:shop-team")
        good = await kit.upload(svc.client, team, kit.artifacts.good, "shop.pyz")
        created = await kit.request_deploy(svc.client, team, app, "v1", good, {"size": 2}, 2)
        deployed = await kit.wait_for_change(svc.client, created, kit.finished)
        assert deployed["state"] == "succeeded", deployed["reason"]
        before = (await svc.client.get(f"/v1/apps/{app}/instances")).json()
        assert len(before) == 2 and len({i["zone"] for i in before}) == 2
        victim = before[0]

        os.kill(pid_of(tmp_path, victim["id"]), signal.SIGKILL)

        events = await kit.read_events(
            kit.infra,
            svc.prefix + "deploy-done",
            lambda found: any(
                e.data.app == app and e.data.request_id.startswith(f"pipeline/{app}/heal-")
                for e in found
            ),
            timeout=30,
        )
        (healed,) = [
            e.data
            for e in events
            if e.data.app == app and e.data.request_id.startswith(f"pipeline/{app}/heal-")
        ]
        assert isinstance(healed, DeployDone)
        assert (healed.kind, healed.outcome, healed.replicas) == ("scale", "succeeded", 2)
        ids = {i.id for i in healed.instances}
        assert victim["id"] not in ids
        assert {i.status for i in healed.instances} == {"ready"}
        assert ids == kit.running_instance_ids(tmp_path)
        new = [i for i in healed.instances if i.id not in {b["id"] for b in before}]
        assert len(new) == 1 and new[0].zone != victim["zone"]

        changes = (await svc.client.get("/v1/changes", params={"app": app})).json()["items"]
        (heal,) = [c for c in changes if c["request_id"] == healed.request_id]
        assert heal["actor"] == "service:pipeline"
        assert (heal["cause"], heal["target"]["replicas"]) == (victim["id"], 2)
        assert victim["zone"] not in heal["target"]["placement"]["zones"]
        stopped = (
            await svc.client.get(f"/v1/apps/{app}/instances", params={"include_stopped": True})
        ).json()
        assert {i["id"]: i["status"] for i in stopped}[victim["id"]] == "stopped"


async def test_a_change_requested_in_a_trace_publishes_its_deploy_done_in_that_trace(
    kit: Any, tmp_path: Path
) -> None:
    app = unique("shop")
    kit.cmdb.add_app(app, owner="shop-team", replicas=1)
    async with kit.pipeline(kit.infra, kit.cmdb, tmp_path) as svc:
        rt = svc.app.state.runtime
        team = svc.auth("ci", "team:shop-team")
        good = await kit.upload(svc.client, team, kit.artifacts.good, "shop.pyz")
        request = ChangeRequested(
            app=app,
            request_id=f"elastic/{app}/t1",
            kind="deploy",
            target=ChangeTarget(version="v1", artifact=f"sha256:{good}", replicas=1),
            requested_by="service:elastic",
        )
        parent = context_from(f"00-{KNOWN_TRACE}-00f067aa0ba902b7-01")
        with tracer.start_as_current_span("decision", context=parent):
            async with rt.sessions() as session, session.begin():
                sent = rt.outbox.add(session, request)
        assert trace_id_of(sent.traceparent) == KNOWN_TRACE

        done = await kit.read_events(
            kit.infra,
            svc.prefix + "deploy-done",
            lambda found: any(e.data.request_id == request.request_id for e in found),
            timeout=30,
        )
        (finished,) = [e for e in done if e.data.request_id == request.request_id]
        assert finished.data.outcome == "succeeded", finished.data.error
        assert trace_id_of(finished.traceparent) == KNOWN_TRACE

        progress = await kit.read_events(
            kit.infra,
            svc.prefix + "change-progressed",
            lambda found: any(
                e.data.change_id == finished.data.change_id and e.data.state == "succeeded"
                for e in found
            ),
        )
        mine = [e for e in progress if e.data.change_id == finished.data.change_id]
        assert len(mine) >= 3
        assert {trace_id_of(e.traceparent) for e in mine} == {KNOWN_TRACE}
