"""Losing every instance of one zone: the platform notices and restores the capacity elsewhere."""

from __future__ import annotations

import httpx
import pytest

from ooda import scenario
from ooda.testing import unique

from .conftest import SCRAPE_INTERVAL_SECONDS, Platform
from .loop import (
    Load,
    cmdb_instances,
    eventually,
    instance_records,
    kill_pid,
    live_endpoints,
    runs,
    set_fast_policy,
)

pytestmark = pytest.mark.integration

STEADY_RPS = 10.0  # light traffic, well within the two instances that survive


async def scraped(http: httpx.AsyncClient, platform: Platform, app: str) -> dict[str, bool | None]:
    """host:port -> up, of the monitor's targets of `app`."""
    targets = (await http.get(f"{platform.url('monitor')}/v1/targets", params={"app": app})).json()
    return {t["url"].removeprefix("http://").split("/")[0]: t["up"] for t in targets}


async def test_killing_every_instance_of_a_zone_is_noticed_and_the_capacity_replaced(
    platform: Platform, http: httpx.AsyncClient, tmp_path_factory: pytest.TempPathFactory
) -> None:
    app = unique("zonal")
    plan = scenario.AppPlan(
        app=app, min_replicas=3, max_replicas=6, desired=3, capacity_rps=20.0,
        policy="seasonal-naive",
    )  # fmt: skip
    await scenario.bring_up(platform.scenario(), plan, tmp_path_factory.mktemp("zone-failure"))
    await set_fast_policy(http, platform, plan)
    load = Load(platform, app)

    async def all_scraped_up() -> bool:
        ready = {i["endpoint"] for i in await cmdb_instances(http, platform, app)}
        return len(ready) == 3 and (await scraped(http, platform, app)) == dict.fromkeys(
            ready, True
        )

    await load.run_until(STEADY_RPS, all_scraped_up, timeout_s=6 * SCRAPE_INTERVAL_SECONDS)
    before = [i for i in await cmdb_instances(http, platform, app) if i["status"] == "ready"]
    zones = {i["zone_id"] for i in before}
    assert len(zones) == 3, f"three instances spread over three zones: {before}"
    failed_zone = sorted(zones)[0]
    doomed = {i["endpoint"] for i in before if i["zone_id"] == failed_zone}

    # The zone fails: every instance in it dies at once (SIGKILL, no goodbye).
    records = [r for r in instance_records(platform, app) if f"127.0.0.1:{r['port']}" in doomed]
    assert len(records) == len(doomed), (records, doomed)
    for record in records:
        kill_pid(record["pid"])
    assert await eventually(lambda: _none_run(records), timeout_s=5), "killed instances still run"

    # The monitor sees them down at its next scrapes.
    async def doomed_down() -> bool:
        targets = await scraped(http, platform, app)
        return all(targets.get(endpoint) is False for endpoint in doomed)

    await load.run_until(STEADY_RPS, doomed_down, timeout_s=3 * SCRAPE_INTERVAL_SECONDS + 4)

    # The platform re-places the lost capacity in the other zones; the CMDB drops the dead
    # instances, and the CMDB, the monitor and the running processes agree.
    async def replaced() -> bool:
        listed = await cmdb_instances(http, platform, app)
        ready = {i["endpoint"] for i in listed if i["status"] == "ready"}
        zones_now = {i["zone_id"] for i in listed if i["status"] == "ready"}
        live = await live_endpoints(http, platform, app)
        targets = await scraped(http, platform, app)
        return (
            len(ready) == plan.min_replicas
            and not ready & doomed
            and failed_zone not in zones_now
            and ready == live
            and targets == dict.fromkeys(ready, True)
        )

    try:
        await load.run_until(STEADY_RPS, replaced, timeout_s=45)
    except AssertionError as failure:
        listed = await cmdb_instances(http, platform, app)
        evidence = {
            "killed zone": failed_zone,
            "killed": sorted(doomed),
            "cmdb": sorted((i["endpoint"], i["zone_id"], i["status"]) for i in listed),
            "running": sorted(await live_endpoints(http, platform, app)),
            "monitor targets": await scraped(http, platform, app),
            "elastic outcomes": (
                await http.get(f"{platform.url('elastic')}/v1/apps/{app}/outcomes")
            ).json(),
            "pipeline changes": [
                (c.get("kind"), c.get("state"), c.get("reason"))
                for c in (
                    await http.get(f"{platform.url('pipeline')}/v1/changes", params={"app": app})
                )
                .json()
                .get("items", [])
            ],
        }
        raise AssertionError(f"capacity not re-placed: {evidence}") from failure


async def _none_run(records: list[dict]) -> bool:
    return not any(runs(r["pid"], r["id"]) for r in records)
