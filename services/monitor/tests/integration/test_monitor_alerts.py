"""Alert rules evaluated every interval on real rollups: firing and resolved events, deduplicated."""

from __future__ import annotations

import pytest

from ooda.events import AlertRaised, Event
from ooda.testing import unique

pytestmark = pytest.mark.integration


def alerts(events: list[Event], app: str, rule: str, state: str) -> list[AlertRaised]:
    return [
        e.data
        for e in events
        if isinstance(e.data, AlertRaised)
        and e.data.app == app
        and e.data.rule == rule
        and e.data.state == state
    ]


async def test_an_error_rate_alert_fires_once_and_resolves_when_errors_stop(
    env, fleet, run_monitor, wait_for
) -> None:
    app = unique("alerting")
    instance = fleet.spawn(app, "al-a", rate=100.0, statuses=["200", "500"])
    fleet.owners[app] = "sre"
    writer = env.auth("sre", "alerts:write", "team:sre")
    rules = {
        "rules": [
            {
                "kind": "threshold",
                "name": "errors-high",
                "metric": "error_rate",
                "op": ">",
                "threshold": 0.2,
                "clear_threshold": 0.1,
                "severity": "critical",
            },
            {"kind": "slo", "objective": 0.99},
        ]
    }
    async with run_monitor(env.settings(cmdb_url=fleet.url)) as running:
        client = running.client
        denied = await client.put(
            f"/v1/apps/{app}/alert-rules", json=rules, headers=env.auth("dev", "metrics:push")
        )
        assert denied.status_code == 403
        contradictory = {"rules": [rules["rules"][0] | {"clear_threshold": 0.3}]}
        bad = await client.put(f"/v1/apps/{app}/alert-rules", json=contradictory, headers=writer)
        assert bad.status_code == 422 and "clear threshold" in bad.text
        assert (await client.get(f"/v1/apps/{app}/alert-rules")).json()["rules"] == []

        stored = await client.put(f"/v1/apps/{app}/alert-rules", json=rules, headers=writer)
        assert stored.status_code == 200, stored.text
        assert [r["name"] for r in stored.json()["rules"]] == [
            "errors-high",
            "slo-availability-fast-burn",
            "slo-availability-slow-burn",
        ]
        await env.events(
            "alert-raised",
            lambda found: (
                bool(alerts(found, app, "errors-high", "firing"))
                and bool(alerts(found, app, "slo-availability-fast-burn", "firing"))
            ),
        )
        firing = (await client.get("/v1/alerts", params={"state": "firing", "app": app})).json()
        assert {a["rule"] for a in firing} >= {"errors-high", "slo-availability-fast-burn"}

        instance.statuses = ["200"]
        found = await env.events(
            "alert-raised", lambda found: bool(alerts(found, app, "errors-high", "resolved"))
        )
        (raised,) = alerts(found, app, "errors-high", "firing")
        (resolved,) = alerts(found, app, "errors-high", "resolved")
        assert resolved.alert_id == raised.alert_id
        assert raised.value is not None and raised.value > 0.2
        listed = (await client.get("/v1/alerts", params={"app": app})).json()
        by_rule = {a["rule"]: a for a in listed}
        assert by_rule["errors-high"]["state"] == "resolved"
        assert by_rule["errors-high"]["resolved_at"] is not None

        removed = await client.delete(f"/v1/apps/{app}/alert-rules", headers=writer)
        assert removed.status_code == 204
        assert (await client.get(f"/v1/apps/{app}/alert-rules")).json()["rules"] == []
