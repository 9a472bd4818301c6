"""Pushing samples and observations and writing alert rules are scoped to the app's owner team."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ooda.testing import free_port, unique

pytestmark = pytest.mark.integration


def observation() -> dict[str, object]:
    end = datetime.now(UTC).replace(microsecond=0)
    return {
        "window_start": (end - timedelta(seconds=5)).isoformat(),
        "window_end": end.isoformat(),
        "values": {"request_rate": 900.0, "ready_instances": 1},
        "instance_count": 1,
    }


def samples(app: str) -> dict[str, object]:
    return {"app": app, "instance": "i-1", "samples": [{"name": "http_in_flight", "value": 1}]}


RULES = {"rules": [{"kind": "slo", "objective": 0.99}]}


async def test_a_team_writes_only_for_its_own_applications(env, fleet, run_monitor) -> None:
    ours, theirs = unique("ours"), unique("theirs")
    fleet.owners.update({ours: "alpha", theirs: "beta"})
    alpha = env.auth("alpha-agent", "metrics:push", "alerts:write", "team:alpha")
    async with run_monitor(env.settings(cmdb_url=fleet.url)) as running:
        client = running.client

        # Another team's application: no fake load, no samples, no alert rules.
        fake_load = await client.post(
            f"/v1/apps/{theirs}/observations", json=observation(), headers=alpha
        )
        assert fake_load.status_code == 403, fake_load.text
        assert "team:beta" in fake_load.json()["detail"]
        pushed = await client.post("/v1/push", json=samples(theirs), headers=alpha)
        assert pushed.status_code == 403, pushed.text
        text = await client.post(
            "/v1/push",
            content="http_in_flight 1\n",
            params={"app": theirs, "instance": "i-1"},
            headers=alpha | {"Content-Type": "text/plain"},
        )
        assert text.status_code == 403, text.text
        rules = await client.put(f"/v1/apps/{theirs}/alert-rules", json=RULES, headers=alpha)
        assert rules.status_code == 403, rules.text
        deleted = await client.delete(f"/v1/apps/{theirs}/alert-rules", headers=alpha)
        assert deleted.status_code == 403, deleted.text

        # Its own: all of it.
        own = await client.post(f"/v1/apps/{ours}/observations", json=observation(), headers=alpha)
        assert own.status_code == 201, own.text
        assert (await client.post("/v1/push", json=samples(ours), headers=alpha)).status_code == 201
        assert (
            await client.put(f"/v1/apps/{ours}/alert-rules", json=RULES, headers=alpha)
        ).status_code == 200

        # The team scope alone is not the capability; the capability alone is no longer enough.
        team_only = env.auth("alpha-dev", "team:alpha")
        assert (
            await client.post("/v1/push", json=samples(ours), headers=team_only)
        ).status_code == 403
        global_push = env.auth("agent", "metrics:push")
        assert (
            await client.post("/v1/push", json=samples(ours), headers=global_push)
        ).status_code == 403

        # An application the CMDB does not know: 404; an admin may still write for any app.
        unknown = await client.post(
            f"/v1/apps/{unique('nobody')}/observations", json=observation(), headers=alpha
        )
        assert unknown.status_code == 404, unknown.text
        admin = env.auth("root", "admin")
        assert (
            await client.put(f"/v1/apps/{theirs}/alert-rules", json=RULES, headers=admin)
        ).status_code == 200

        assert (
            (await client.get(f"/v1/apps/{theirs}/alert-rules"))
            .json()["rules"][0]["name"]
            .startswith("slo-")
        )


async def test_an_unreachable_cmdb_answers_503_and_stores_nothing(env, run_monitor) -> None:
    app = unique("dark")
    alpha = env.auth("alpha-agent", "metrics:push", "team:alpha")
    settings = env.settings(cmdb_url=f"http://127.0.0.1:{free_port()}")
    async with run_monitor(settings) as running:
        answer = await running.client.post(
            f"/v1/apps/{app}/observations", json=observation(), headers=alpha
        )
        assert answer.status_code == 503, answer.text
        assert "CMDB" in answer.json()["detail"]
        assert answer.headers["Retry-After"] == "2"
        pushed = await running.client.post("/v1/push", json=samples(app), headers=alpha)
        assert pushed.status_code == 503
