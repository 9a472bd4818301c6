"""The closed loop, end to end: load changes and the platform resizes the application by itself.

One run per module (bring an application up, step the load up, then down); the tests below each
check one property of that run, so one broken property does not hide the others.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
import pytest

from decision.engine import decision_id
from ooda import scenario
from ooda.testing import unique

from .conftest import SCRAPE_INTERVAL_SECONDS, Platform
from .loop import (
    HIGH_RPS,
    LOW_RPS,
    SCALE_DOWN_COOLDOWN_S,
    Load,
    Record,
    cmdb_instances,
    eventually,
    live_endpoints,
    loop_plan,
    read_events,
    ready_endpoints,
    set_fast_policy,
)

pytestmark = pytest.mark.integration


async def scraped_up(http: httpx.AsyncClient, platform: Platform, app: str) -> set[str]:
    """host:port of the monitor's targets of `app` whose last scrape succeeded."""
    targets = (await http.get(f"{platform.url('monitor')}/v1/targets", params={"app": app})).json()
    return {t["url"].removeprefix("http://").split("/")[0] for t in targets if t["up"]}


@dataclass
class LoopRun:
    """What one load step up and down did, as the tests check it."""

    plan: scenario.AppPlan
    started: set[str]
    grown: set[str]
    readyz: dict[str, int]
    scraped: set[str]
    final_ready: set[str]
    final_listed: list[dict]
    final_live: set[str]
    events: list[Record]
    load: Load

    def of_app(self, topic: str) -> list[Record]:
        return [r for r in self.events if r.topic == topic and r.subject == self.plan.app]

    def scales(self, up: bool) -> list[Record]:
        """Successful scale deploy-dones that grew (or shrank) the application, in order."""
        found, size = [], len(self.started)
        for r in sorted(self.of_app("deploy-done"), key=lambda r: r.data["sequence"]):
            if r.data["kind"] == "scale" and r.data["outcome"] == "succeeded":
                if (r.data["replicas"] > size) == up and r.data["replicas"] != size:
                    found.append(r)
                size = r.data["replicas"]
        return found


@pytest.fixture(scope="module")
async def loop_run(
    platform: Platform, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LoopRun]:
    plan = loop_plan(unique("shop"))
    app = plan.app
    async with httpx.AsyncClient(timeout=10.0) as http:
        started = await scenario.bring_up(
            platform.scenario(), plan, tmp_path_factory.mktemp("closed-loop")
        )
        await set_fast_policy(http, platform, plan)
        load = Load(platform, app)

        # The step: two instances cannot serve it; nobody but the platform adds capacity.
        async def scaled_out() -> bool:
            return len(await ready_endpoints(http, platform, app)) > plan.desired

        took = await load.run_until(HIGH_RPS, scaled_out, timeout_s=120)
        print(f"\n{app}: scaled out {took:.1f}s after the load step")

        # While the load holds (so the platform keeps them), the new instances get scraped.
        async def all_scraped() -> bool:
            ready = await ready_endpoints(http, platform, app)
            return ready <= await scraped_up(http, platform, app)

        await load.run_until(HIGH_RPS, all_scraped, timeout_s=6 * SCRAPE_INTERVAL_SECONDS)
        grown = await ready_endpoints(http, platform, app)
        readyz = {e: (await http.get(f"http://{e}/readyz")).status_code for e in grown}
        scraped = await scraped_up(http, platform, app)

        async def scaled_in() -> bool:
            return len(await ready_endpoints(http, platform, app)) == plan.min_replicas

        took = await load.run_until(LOW_RPS, scaled_in, timeout_s=120)
        print(f"{app}: scaled in from {len(grown)} {took:.1f}s after the load fell")

        async def cmdb_is_reality() -> bool:
            return await ready_endpoints(http, platform, app) == await live_endpoints(
                http, platform, app
            )

        await eventually(cmdb_is_reality, timeout_s=15)
        listed = await cmdb_instances(http, platform, app)
        yield LoopRun(
            plan=plan,
            started={i["endpoint"] for i in started},
            grown=grown,
            readyz=readyz,
            scraped=scraped,
            final_ready={i["endpoint"] for i in listed if i["status"] == "ready"},
            final_listed=listed,
            final_live=await live_endpoints(http, platform, app),
            events=await read_events(platform),
            load=load,
        )


async def test_a_load_step_makes_the_platform_scale_out_by_itself(loop_run: LoopRun) -> None:
    (first, *_) = loop_run.scales(up=True)
    assert first.data["replicas"] > loop_run.plan.desired
    requested = [
        r
        for r in loop_run.of_app("change-requested")
        if r.data["request_id"] == first.data["request_id"]
    ]
    assert len(requested) == 1 and requested[0].data["kind"] == "scale"
    assert requested[0].data["requested_by"] != "ooda-scenario"  # no person asked for it
    decided = [r for r in loop_run.of_app("scale-decided") if r.id == requested[0].data["cause"]]
    assert len(decided) == 1
    assert decided[0].data["desired_replicas"] > decided[0].data["current_replicas"]
    assert sum(s.ok for s in loop_run.load.steps) > 0


async def test_the_new_instances_are_ready_recorded_in_the_cmdb_and_scraped(
    loop_run: LoopRun,
) -> None:
    new = loop_run.grown - loop_run.started
    assert new, f"no new instance: {loop_run.grown}"
    assert loop_run.readyz == dict.fromkeys(loop_run.grown, 200)
    assert loop_run.grown <= loop_run.scraped


async def test_when_the_load_falls_it_scales_back_in_after_its_stabilisation(
    loop_run: LoopRun,
) -> None:
    ups, downs = loop_run.scales(up=True), loop_run.scales(up=False)
    assert downs, "no scale-in deploy-done"
    assert downs[-1].data["replicas"] == loop_run.plan.min_replicas
    last_up_before = [u for u in ups if u.data["sequence"] < downs[0].data["sequence"]][-1]
    # Elastic's scale-down cooldown runs from the last scale action it saw finish.
    gap = datetime.fromisoformat(downs[0].data["requested_at"]) - datetime.fromisoformat(
        last_up_before.data["finished_at"]
    )
    assert gap >= timedelta(seconds=SCALE_DOWN_COOLDOWN_S), gap


async def test_one_trace_id_links_observation_decision_change_deploy_and_cmdb_record(
    loop_run: LoopRun,
) -> None:
    app = loop_run.plan.app
    done = loop_run.scales(up=True)[0]
    (requested,) = [
        r
        for r in loop_run.of_app("change-requested")
        if r.data["request_id"] == done.data["request_id"]
    ]
    (decided,) = [r for r in loop_run.of_app("scale-decided") if r.id == requested.data["cause"]]
    # The decision id names the observed window it was decided after.
    (observed,) = [
        r
        for r in loop_run.of_app("metric-observed")
        if decision_id(app, datetime.fromisoformat(r.data["window_end"]))
        == decided.data["decision_id"]
    ]
    recorded = [
        r
        for r in loop_run.events
        if r.topic == "cmdb-changed" and done.id in (r.data.get("cause") or "")
    ]
    assert recorded, f"no cmdb-changed caused by deploy-done {done.id}"
    chain = [observed, decided, requested, done, recorded[0]]
    assert observed.trace_id and len(observed.trace_id) == 32
    broken = [
        f"{parent.topic} {parent.id} (trace {parent.trace_id}) -> "
        f"{child.topic} {child.id} (trace {child.trace_id})"
        for parent, child in itertools.pairwise(chain)
        if child.trace_id != parent.trace_id
    ]
    assert not broken, "the trace context is lost at: " + "; ".join(broken)


async def test_at_the_end_the_cmdb_lists_exactly_the_processes_that_run(
    loop_run: LoopRun,
) -> None:
    assert loop_run.final_ready == loop_run.final_live, (
        f"CMDB lists {loop_run.final_listed}, running: {loop_run.final_live}"
    )
    assert len(loop_run.final_live) == loop_run.plan.min_replicas
    assert {i["status"] for i in loop_run.final_listed} == {"ready"}, loop_run.final_listed
