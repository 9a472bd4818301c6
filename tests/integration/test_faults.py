"""The loop survives faults during a run under changing load: kill -9 of each service once, a
restart of the Kafka broker and one of PostgreSQL.

The platform here runs on a broker and a cluster of this module's own (`private_local_infra`),
so restarting them disturbs no other test.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from ooda import scenario
from ooda.testing import SERVICES, PrivateInfra, private_local_infra, unique

from .conftest import Platform, started_platform
from .loop import (
    HIGH_RPS,
    LOW_RPS,
    Load,
    changes_of,
    cmdb_instances,
    diagnose,
    eventually,
    live_endpoints,
    loop_plan,
    read_events,
    ready_endpoints,
    set_fast_policy,
)

pytestmark = pytest.mark.integration

BACKLOG = re.compile(r"^ooda_outbox_backlog\{[^}]*\}\s+(\S+)$", re.MULTILINE)


async def outbox_backlog(http: httpx.AsyncClient, platform: Platform) -> dict[str, float]:
    """Each service's `ooda_outbox_backlog` (rows written, not yet published)."""
    found = {}
    for name in SERVICES:
        text = (await http.get(f"{platform.url(name)}/metrics")).text
        values = BACKLOG.findall(text)
        assert values, f"{name} exports no ooda_outbox_backlog series"
        found[name] = sum(float(v) for v in values)
    return found


@pytest.fixture(scope="module")
def own_infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateInfra]:
    with private_local_infra(tmp_path_factory.mktemp("own-infra")) as private:
        yield private


@pytest.fixture(scope="module")
async def own_platform(
    own_infra: PrivateInfra, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    async with started_platform(own_infra.infra, tmp_path_factory) as running:
        yield running


async def restart(own_infra: PrivateInfra, component: str, injected: list[str]) -> None:
    """Stop the broker or the database and start it again (the services are left running)."""
    began = time.monotonic()
    await asyncio.to_thread(own_infra.restart, component)
    injected.append(f"restart {component} ({time.monotonic() - began:.1f}s down)")


async def crash(platform: Platform, name: str, injected: list[str]) -> None:
    """kill -9 the service, start it again, wait until it is ready."""
    service = platform.services[name]
    service.kill()
    injected.append(f"kill -9 {name}")
    service.start()
    await service.wait_ready()


async def test_crashes_and_infrastructure_restarts_lose_nothing_and_repeat_nothing(
    own_infra: PrivateInfra,
    own_platform: Platform,
    http: httpx.AsyncClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    platform = own_platform
    plan = loop_plan(unique("crashy"))
    app = plan.app
    await scenario.bring_up(platform.scenario(), plan, tmp_path_factory.mktemp("faults"))
    await set_fast_policy(http, platform, plan)
    load = Load(platform, app)
    injected: list[str] = []
    phase_over = asyncio.Event()

    async def over() -> bool:
        return phase_over.is_set()

    # Load steps up; the decision and elastic crash and the broker restarts before the platform
    # reacts, the pipeline crashes while it executes the scale-out.
    high = asyncio.create_task(load.run_until(HIGH_RPS, over, timeout_s=180))
    await asyncio.sleep(3)
    await crash(platform, "decision", injected)
    await crash(platform, "elastic", injected)
    await restart(own_infra, "kafka", injected)

    async def scale_requested() -> bool:
        # Crash the pipeline as soon as a scale change exists: usually mid-rollout, but a fast
        # rollout may already be done, and the checks below hold either way.
        return any(c["kind"] == "scale" for c in await changes_of(http, platform, app))

    assert await eventually(scale_requested, timeout_s=60, interval_s=0.1), (
        f"no scale change requested; logs in {platform.logs}"
    )
    await crash(platform, "pipeline", injected)

    async def scaled_out() -> bool:
        return len(await ready_endpoints(http, platform, app)) > plan.desired

    scaled = await eventually(scaled_out, timeout_s=60)
    phase_over.set()
    await high
    assert scaled, (
        f"no scale-out after the crashes; logs in {platform.logs}\n"
        f"{await diagnose(http, platform, app)}"
    )

    # Load falls; the monitor crashes, the database restarts and the CMDB crashes while the
    # platform scales in.
    phase_over.clear()
    low = asyncio.create_task(load.run_until(LOW_RPS, over, timeout_s=180))
    await crash(platform, "monitor", injected)
    await restart(own_infra, "postgresql", injected)
    await crash(platform, "cmdb", injected)

    async def scaled_in() -> bool:
        return len(await ready_endpoints(http, platform, app)) == plan.min_replicas

    scaled = await eventually(scaled_in, timeout_s=60)
    phase_over.set()
    await low
    assert scaled, (
        f"no scale-in after the crashes; logs in {platform.logs}\n"
        f"{await diagnose(http, platform, app)}"
    )

    # Quiescence: no change left running, every outbox drained, CMDB and processes agree.
    async def quiet() -> bool:
        changes = await changes_of(http, platform, app)
        return (
            all(c["finished_at"] is not None for c in changes)
            and not any((await outbox_backlog(http, platform)).values())
            and await ready_endpoints(http, platform, app)
            == await live_endpoints(http, platform, app)
        )

    await eventually(quiet, timeout_s=30)
    changes = await changes_of(http, platform, app)
    events = await read_events(platform)
    done = [r for r in events if r.topic == "deploy-done" and r.subject == app]
    requested = [r for r in events if r.topic == "change-requested" and r.subject == app]
    checked = []

    # No change executed twice: one pipeline change per request, one deploy-done per change.
    per_request = Counter(c["request_id"] for c in changes)
    assert max(per_request.values()) == 1, per_request
    assert {r.data["request_id"] for r in requested} <= set(per_request), (
        "a change-requested the pipeline never took in"
    )
    per_change = Counter(r.data["change_id"] for r in done)
    assert max(per_change.values()) == 1, f"a deploy-done published twice: {per_change}"
    checked.append(f"{len(changes)} changes, each executed once")
    # No deploy-done lost: every finished change announced its outcome.
    finished = {c["id"] for c in changes if c["finished_at"] is not None}
    assert finished == set(per_change), (finished, set(per_change))
    assert len({r.data["sequence"] for r in done}) == len(done)
    checked.append(f"{len(done)} deploy-done, one per finished change, sequences distinct")
    # The CMDB equals reality.
    listed = await cmdb_instances(http, platform, app)
    ready = {i["endpoint"] for i in listed if i["status"] == "ready"}
    live = await live_endpoints(http, platform, app)
    assert ready == live, f"CMDB lists {listed}, running: {live}"
    assert len(live) == plan.min_replicas
    checked.append(f"CMDB lists exactly the {len(live)} running instances")
    # No event stuck in an outbox.
    backlog = await outbox_backlog(http, platform)
    assert backlog == dict.fromkeys(SERVICES, 0.0), backlog
    checked.append("every outbox backlog is 0")
    print(f"\ninjected: {injected}\nchecked: {checked}")
