"""Announced targets on real PostgreSQL and Kafka: scraped before the CMDB lists them.

A deployer announces instances the CMDB does not know yet; the monitor scrapes them beside the
CMDB's targets (the CMDB's entry wins), drops them when their TTL ends or once the CMDB lists
them, keeps them across a restart, and refuses bad input with 422 and the field's path.
"""

from __future__ import annotations

from typing import Any

import pytest

from ooda.events import Event, MetricObserved
from ooda.testing import unique

pytestmark = pytest.mark.integration


def windows(events: list[Event], app: str, instances: int) -> list[MetricObserved]:
    return [
        e.data
        for e in events
        if isinstance(e.data, MetricObserved)
        and e.data.app == app
        and e.data.instance_count == instances
        and e.data.values.request_rate is not None
    ]


def announced(fleet: Any, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "instance_id": name,
        "endpoint": f"127.0.0.1:{fleet.port}",
        "metrics_path": f"/{name}/metrics",
        "version": "v2",
        "zone": "z2",
        **extra,
    }


async def targets_of(client: Any, app: str) -> dict[str, dict[str, Any]]:
    found = (await client.get("/v1/targets", params={"app": app})).json()
    return {t["instance_id"]: t for t in found}


async def test_announced_targets_are_scraped_merged_with_sd_expire_and_survive_a_restart(
    env, fleet, run_monitor, wait_for
) -> None:
    app = unique("rollout")
    fleet.spawn(app, "old-a", rate=100.0)
    fleet.spawn(app, "new-b", rate=50.0, statuses=["200", "500"], listed=False)
    fleet.spawn(app, "short-c", rate=10.0, listed=False)
    deployer = env.auth("service:pipeline", "deploy")
    path = f"/v1/apps/{app}/announced-targets"
    settings = env.settings(cmdb_url=fleet.url)
    async with run_monitor(settings) as running:
        client = running.client
        assert (
            await client.post(path, json={"targets": [announced(fleet, "new-b")]})
        ).status_code == 401
        pusher = env.auth("agent", "metrics:push")
        refused = await client.post(
            path, json={"targets": [announced(fleet, "new-b")]}, headers=pusher
        )
        assert refused.status_code == 403

        # The new instance is scraped beside the CMDB's one: the application's windows cover
        # both (150 requests/s, a sixth of them errors) although the CMDB lists only old-a.
        answer = await client.post(
            path,
            json={"targets": [announced(fleet, "new-b", labels={"batch": "1"})]},
            headers=deployer,
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["scrape_interval_s"] == 1.0
        [stored] = body["targets"]
        assert stored["instance_id"] == "new-b" and stored["announced_by"] == "service:pipeline"
        assert stored["labels"] == {"batch": "1"}

        async def both_scraped() -> dict[str, dict[str, Any]] | None:
            found = await targets_of(client, app)
            ok = found.get("new-b", {}).get("up") and found.get("old-a", {}).get("up")
            return found if ok else None

        found = await wait_for(both_scraped, timeout=15)
        assert found["old-a"]["source"] == "sd"
        assert found["new-b"]["source"] == "announced"
        assert found["new-b"]["labels"] == {"batch": "1", "version": "v2", "zone": "z2"}
        events = await env.events("metric-observed", lambda f: len(windows(f, app, 2)) >= 2)
        last = windows(events, app, 2)[-1]
        assert last.values.request_rate == pytest.approx(150.0, rel=0.15)
        assert last.values.error_rate == pytest.approx(25.0 / 150.0, rel=0.25)

        # The CMDB's entry wins: an announcement of an instance it lists (by id, or by the
        # same URL under another id) adds no target and leaves old-a as the CMDB has it.
        clash = {
            "targets": [
                announced(fleet, "old-a", metrics_path="/elsewhere/metrics"),
                announced(fleet, "old-a-alias", metrics_path="/old-a/metrics"),
            ]
        }
        assert (await client.post(path, json=clash, headers=deployer)).status_code == 200

        async def clash_settled() -> dict[str, dict[str, Any]] | None:
            listed = (await client.get(path)).json()["targets"]
            found = await targets_of(client, app)
            # The CMDB lists old-a, so its announcement is dropped at the next refresh.
            return found if [t["instance_id"] for t in listed] == ["new-b", "old-a-alias"] else None

        found = await wait_for(clash_settled, timeout=10)
        assert set(found) == {"old-a", "new-b"}
        assert found["old-a"]["source"] == "sd"
        assert found["old-a"]["url"].endswith("/old-a/metrics")

        # The same instance id cannot be announced for another application meanwhile.
        other = await client.post(
            f"/v1/apps/{unique('other')}/announced-targets",
            json={"targets": [announced(fleet, "new-b")]},
            headers=deployer,
        )
        assert other.status_code == 409 and "new-b" in other.text

        # A short TTL ends: the target is dropped and the announcement forgotten.
        short = {"targets": [announced(fleet, "short-c")], "ttl_seconds": 2}
        assert (await client.post(path, json=short, headers=deployer)).status_code == 200

        async def short_seen() -> bool:
            return bool((await targets_of(client, app)).get("short-c", {}).get("up"))

        async def short_gone() -> bool:
            listed = (await client.get(path)).json()["targets"]
            gone = "short-c" not in await targets_of(client, app)
            return gone and "short-c" not in {t["instance_id"] for t in listed}

        await wait_for(short_seen, timeout=10)
        await wait_for(short_gone, timeout=10)

        # A withdrawn announcement is no longer scraped; withdrawing it again is a 404.
        assert (await client.delete(f"{path}/old-a-alias")).status_code == 401
        assert (await client.delete(f"{path}/old-a-alias", headers=deployer)).status_code == 204
        assert (await client.delete(f"{path}/old-a-alias", headers=deployer)).status_code == 404

        # Several at once (a rolled-back batch): those announced are withdrawn and no longer
        # scraped; ids never announced (or announced for another app) are ignored.
        fleet.spawn(app, "gone-d", rate=10.0, listed=False)
        fleet.spawn(app, "gone-e", rate=10.0, listed=False)
        batch = {"targets": [announced(fleet, "gone-d"), announced(fleet, "gone-e")]}
        assert (await client.post(path, json=batch, headers=deployer)).status_code == 200

        async def batch_seen() -> bool:
            found = await targets_of(client, app)
            return bool(found.get("gone-d", {}).get("up") and found.get("gone-e", {}).get("up"))

        await wait_for(batch_seen, timeout=10)
        stopped = {"instance_ids": ["gone-d", "gone-e", "never-announced"]}
        assert (await client.post(f"{path}/withdraw", json=stopped)).status_code == 401
        withdrawn = await client.post(f"{path}/withdraw", json=stopped, headers=deployer)
        assert withdrawn.status_code == 200, withdrawn.text
        assert withdrawn.json() == {"app": app, "withdrawn": ["gone-d", "gone-e"]}

        async def batch_gone() -> bool:
            return not {"gone-d", "gone-e"} & set(await targets_of(client, app))

        await wait_for(batch_gone, timeout=10)
        listed = {t["instance_id"] for t in (await client.get(path)).json()["targets"]}
        assert not {"gone-d", "gone-e"} & listed and "new-b" in listed
        for bad in ({"instance_ids": []}, {"instance_ids": ["bad id"]}, {"ids": ["gone-d"]}):
            refused = await client.post(f"{path}/withdraw", json=bad, headers=deployer)
            assert refused.status_code == 422, (bad, refused.text)

    # A restarted monitor keeps scraping the announced instance (it is in its database).
    async with run_monitor(settings) as running:
        client = running.client

        async def new_b_scraped_again() -> bool:
            found = await targets_of(client, app)
            return (
                bool(found.get("new-b", {}).get("up")) and found["new-b"]["source"] == "announced"
            )

        await wait_for(new_b_scraped_again, timeout=15)
        assert [t["instance_id"] for t in (await client.get(path)).json()["targets"]] == ["new-b"]

        # Once the CMDB lists it (the change ended), the CMDB is its source and the
        # announcement is over.
        fleet.listed.add("new-b")

        async def adopted() -> bool:
            found = await targets_of(client, app)
            listed = (await client.get(path)).json()["targets"]
            return found.get("new-b", {}).get("source") == "sd" and listed == []

        await wait_for(adopted, timeout=10)
        assert set(await targets_of(client, app)) == {"old-a", "new-b"}


BAD_ANNOUNCEMENTS: list[tuple[Any, list[Any]]] = [
    (
        {"targets": [{"instance_id": "i-1", "endpoint": "no-port", "version": "v", "zone": "z"}]},
        ["body", "targets", 0, "endpoint"],
    ),
    (
        {"targets": [{"instance_id": "i-1", "endpoint": "h:70000", "version": "v", "zone": "z"}]},
        ["body", "targets", 0, "endpoint"],
    ),
    (
        {"targets": [{"instance_id": "i-1", "endpoint": "h:80", "zone": "z"}]},
        ["body", "targets", 0, "version"],
    ),
    (
        {"targets": [{"instance_id": "bad id", "endpoint": "h:80", "version": "v", "zone": "z"}]},
        ["body", "targets", 0, "instance_id"],
    ),
    (
        {
            "targets": [
                {
                    "instance_id": "i-1",
                    "endpoint": "h:80",
                    "version": "v",
                    "zone": "z",
                    "labels": {"__scheme__": "https"},
                }
            ]
        },
        ["body", "targets", 0, "labels"],
    ),
    (
        {
            "targets": [
                {
                    "instance_id": "i-1",
                    "endpoint": "h:80",
                    "version": "v",
                    "zone": "z",
                    "metrics_path": "metrics",
                }
            ]
        },
        ["body", "targets", 0, "metrics_path"],
    ),
    (
        {
            "targets": [
                {"instance_id": "i-1", "endpoint": "h:80", "version": "v", "zone": "z", "extra": 1}
            ]
        },
        ["body", "targets", 0, "extra"],
    ),
    (
        {
            "targets": [{"instance_id": "i-1", "endpoint": "h:80", "version": "v", "zone": "z"}],
            "ttl_seconds": 0,
        },
        ["body", "ttl_seconds"],
    ),
    (
        {
            "targets": [{"instance_id": "i-1", "endpoint": "h:80", "version": "v", "zone": "z"}],
            "ttl_seconds": 86400,
        },
        ["body", "ttl_seconds"],
    ),
    (
        {
            "targets": [
                {"instance_id": "i-1", "endpoint": "h:80", "version": "v\u0000", "zone": "z"}
            ]
        },
        ["body", "targets", 0, "version"],
    ),
    (
        {
            "targets": [
                {
                    "instance_id": "i-1",
                    "endpoint": "h:80",
                    "version": "v",
                    "zone": "z",
                    "labels": {"team": "a\u0000b"},
                }
            ]
        },
        ["body", "targets", 0, "labels", "team"],
    ),
    ({"targets": []}, ["body", "targets"]),
    ({"targets": "i-1"}, ["body", "targets"]),
    (
        {
            "targets": [
                {"instance_id": "i-1", "endpoint": "h:80", "version": "v", "zone": "z"},
                {"instance_id": "i-1", "endpoint": "h:81", "version": "v", "zone": "z"},
            ]
        },
        ["body", "targets", 1, "instance_id"],
    ),
    (
        {
            "targets": [
                {"instance_id": "i-1", "endpoint": "h:80", "version": "v", "zone": "z"},
                {"instance_id": "i-2", "endpoint": "h:80", "version": "v", "zone": "z"},
            ]
        },
        ["body", "targets", 1, "endpoint"],
    ),
]


# Endpoints are strictly host:port: nothing that could steer the scrape to another URL.
BAD_ANNOUNCEMENTS += [
    (
        {"targets": [{"instance_id": "i-1", "endpoint": endpoint, "version": "v", "zone": "z"}]},
        ["body", "targets", 0, "endpoint"],
    )
    for endpoint in (
        "[babc]:80",
        "[aD:4]:80",
        "h/admin:80",
        "h?x=1:80",
        "h#frag:80",
        "user@h:80",
        "h:80/path",
        "h:0",
        "h:65536",
        "-h:80",
        "a..b:80",
    )
]


async def test_bad_announcements_are_refused_with_the_field_path(env, run_monitor) -> None:
    deployer = env.auth("ci", "deploy")
    app = unique("bad")
    path = f"/v1/apps/{app}/announced-targets"
    async with run_monitor(env.settings(cmdb_url="http://127.0.0.1:9")) as running:
        client = running.client
        for body, loc in BAD_ANNOUNCEMENTS:
            answer = await client.post(path, json=body, headers=deployer)
            assert answer.status_code == 422, (body, answer.text)
            assert loc in [d["loc"] for d in answer.json()["detail"]], (body, answer.text)
        # NaN is not JSON, but a lenient parser reads it: still a 422 naming the field.
        item = b'{"instance_id": "i-1", "endpoint": "h:80", "version": "v", "zone": "z"}'
        nan = await client.post(
            path,
            content=b'{"targets": [' + item + b'], "ttl_seconds": NaN}',
            headers=deployer | {"Content-Type": "application/json"},
        )
        assert nan.status_code == 422, nan.text
        assert [d["loc"] for d in nan.json()["detail"]] == [["body", "ttl_seconds"]]
        for content in (b"", b"not json", b"[1, 2]", b'{"targets": [null]}'):
            answer = await client.post(
                path, content=content, headers=deployer | {"Content-Type": "application/json"}
            )
            assert answer.status_code == 422, (content, answer.text)
        ok = {"targets": [{"instance_id": "i-1", "endpoint": "h:80", "version": "v", "zone": "z"}]}
        bad_app = await client.post(
            "/v1/apps/Not_An_App!/announced-targets", json=ok, headers=deployer
        )
        assert bad_app.status_code == 422
        bad_id = await client.delete(f"{path}/bad%00id", headers=deployer)
        assert bad_id.status_code == 422, bad_id.text
        # Nothing bad was stored; an admin may announce too.
        assert (await client.get(path)).json()["targets"] == []
        admin = env.auth("root", "admin")
        assert (await client.post(path, json=ok, headers=admin)).status_code == 200
        assert [t["instance_id"] for t in (await client.get(path)).json()["targets"]] == ["i-1"]


async def test_an_announced_target_on_a_host_the_cmdb_does_not_know_is_listed_refused_and_never_fetched(
    env, fleet, run_monitor, wait_for
) -> None:
    app = unique("ssrf")
    fleet.spawn(app, "known-a", rate=20.0)
    fleet.spawn(app, "elsewhere-b", rate=20.0, listed=False)
    deployer = env.auth("service:pipeline", "deploy")
    path = f"/v1/apps/{app}/announced-targets"
    async with run_monitor(env.settings(cmdb_url=fleet.url)) as running:
        client = running.client
        # `localhost` reaches the same server, but it is not the address of any CMDB host.
        target = announced(fleet, "elsewhere-b") | {"endpoint": f"localhost:{fleet.port}"}
        answer = await client.post(path, json={"targets": [target]}, headers=deployer)
        assert answer.status_code == 200, answer.text

        async def settled() -> dict[str, dict[str, Any]] | None:
            found = await targets_of(client, app)
            refused = found.get("elsewhere-b", {}).get("last_error")
            return found if refused and found.get("known-a", {}).get("up") else None

        found = await wait_for(settled, timeout=15)
        assert found["elsewhere-b"]["up"] is False
        assert "not a host the CMDB knows" in found["elsewhere-b"]["last_error"]
        assert fleet.instances["elsewhere-b"].scrapes == 0
