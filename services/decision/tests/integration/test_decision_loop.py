"""The live decision engine on real Kafka and PostgreSQL: observe, decide, explain, publish."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import select

from decision import handlers
from decision.cmdb import SpecHints, SpecsUnavailable
from decision.config import Settings
from decision.main import MIGRATIONS, create_app
from decision.store import app_state
from ooda.events import DeployDone, MetricObserved, decode
from ooda.events.contracts import InstanceRef, MetricValues
from ooda.telemetry import trace_id_of
from ooda.testing import Infra, RunningService, running_service, unique

pytestmark = pytest.mark.integration
STEP = timedelta(seconds=30)


class FixedSpecs:
    """A CMDB stand-in that answers every app with the same hints."""

    def __init__(self, hints: SpecHints) -> None:
        self._hints = hints

    async def hints(self, app: str) -> SpecHints | None:
        return self._hints


def window(app: str, end: datetime, rate: float, ready: int) -> MetricObserved:
    return MetricObserved(
        app=app,
        window_start=end - STEP,
        window_end=end,
        values=MetricValues(request_rate=rate, ready_instances=ready, cpu_utilisation=None),
        instance_count=ready,
    )


async def publish(svc: RunningService, *payloads: Any) -> list[Any]:
    rt = svc.app.state.runtime
    async with rt.sessions() as session, session.begin():
        return [rt.outbox.add(session, payload) for payload in payloads]


async def decisions(svc: RunningService, app: str, count: int, **params: Any) -> list[dict]:
    async with asyncio.timeout(30):
        while True:
            got = (await svc.client.get(f"/v1/apps/{app}/decisions", params=params)).json()
            if len(got) >= count:
                return list(got)
            await asyncio.sleep(0.2)


async def scale_decided(svc: RunningService, infra: Infra, app: str, count: int) -> list[Any]:
    consumer = AIOKafkaConsumer(
        svc.prefix + "scale-decided",
        **infra.kafka().options(),
        auto_offset_reset="earliest",
        group_id=unique("reader"),
    )
    await consumer.start()
    found: list[Any] = []
    try:
        async with asyncio.timeout(30):
            while len(found) < count:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for r in records:
                        event = decode(r.key, r.headers, r.value)
                        if event.subject == app:
                            found.append(event)
    finally:
        await consumer.stop()
    return found


@pytest.fixture
async def svc(infra: Infra):
    specs = FixedSpecs(
        SpecHints(policy="predictive", min_replicas=1, max_replicas=20, capacity_rps=10.0)
    )
    async with running_service(
        infra, "decision", Settings, lambda s: create_app(s, specs=specs), MIGRATIONS
    ) as running:
        yield running


async def test_a_load_step_is_decided_explained_and_published_once(
    svc: RunningService, infra: Infra
) -> None:
    app = unique("app")
    now = datetime.now(UTC).replace(microsecond=0)
    calm = [window(app, now - (6 - i) * STEP, 10.0, 2) for i in range(5)]
    await publish(svc, *calm)
    await decisions(svc, app, 5)
    (jump,) = await publish(svc, window(app, now, 80.0, 2))  # the load jumps eightfold
    history = await decisions(svc, app, 6)
    step_up = history[-1]
    assert step_up["desired_replicas"] > 2 and step_up["published"] is True
    assert step_up["policy"] == "predictive" and "scale-up" in step_up["reason"]
    (event,) = [
        e
        for e in await scale_decided(svc, infra, app, 1)
        if e.data.decision_id == step_up["decision_id"]
    ]
    assert event.data.desired_replicas == step_up["desired_replicas"]
    assert event.data.current_replicas == 2 and event.data.reason == step_up["reason"]
    assert trace_id_of(event.traceparent) == trace_id_of(jump.traceparent)  # one trace
    # The same window delivered again (a new event id, as after a producer retry) decides nothing.
    await publish(svc, window(app, now, 80.0, 2))
    await asyncio.sleep(1.5)
    assert len((await svc.client.get(f"/v1/apps/{app}/decisions")).json()) == 6
    one = await svc.client.get(f"/v1/decisions/{step_up['decision_id']}")
    assert one.status_code == 200 and one.json()["app"] == app
    assert (await svc.client.get("/v1/decisions/nope")).status_code == 404


async def test_history_warms_the_model_without_publishing_old_decisions(
    svc: RunningService, infra: Infra
) -> None:
    app = unique("app")
    old = datetime(2026, 1, 5, tzinfo=UTC)
    await publish(svc, *[window(app, old + i * STEP, 20.0 + (i % 7), 3) for i in range(40)])
    stored = await decisions(svc, app, 40)
    assert not any(d["published"] for d in stored)
    # A restart forgets the in-memory model; the next fresh window rebuilds it from history.
    svc.app.state.engine.forget({app})
    await publish(svc, window(app, datetime.now(UTC).replace(microsecond=0), 200.0, 3))
    latest = (await decisions(svc, app, 41))[-1]
    model = svc.app.state.engine.models[app]
    # Load one instance serves at 100% of its binding limit.
    saturation = model.capacity.estimate().per_instance / model.targets.cpu_utilisation
    assert latest["published"] is True
    assert latest["desired_replicas"] >= math.ceil(200.0 / saturation)
    assert model.observed == 41


async def test_deploy_done_teaches_the_replica_count_and_the_provisioning_delay(
    svc: RunningService,
) -> None:
    app = unique("app")
    t0 = datetime.now(UTC)
    done = DeployDone(
        app=app,
        change_id="c1",
        request_id="r1",
        kind="scale",
        outcome="succeeded",
        version="1.0",
        replicas=5,
        sequence=3,
        instances=[
            InstanceRef(
                id=f"i{i}",
                version="1.0",
                host="h",
                zone="z",
                endpoint=f"http://127.0.0.1:{9000 + i}",
            )
            for i in range(5)
        ],
        requested_at=t0,
        started_at=t0 + timedelta(seconds=2),
        finished_at=t0 + timedelta(seconds=42),
    )
    older = done.model_copy(update={"replicas": 1, "sequence": 2, "change_id": "c0"})
    await publish(svc, done)
    await publish(svc, older)
    rt = svc.app.state.runtime
    async with asyncio.timeout(30):
        while True:
            async with rt.sessions() as s:
                row = (
                    await s.execute(select(app_state).where(app_state.c.app == app))
                ).one_or_none()
            if row is not None:
                break
            await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)  # give the older event time to (not) apply
    async with rt.sessions() as s:
        row = (await s.execute(select(app_state).where(app_state.c.app == app))).one()
    assert (row.desired_replicas, row.last_sequence) == (5, 3)
    assert row.delay_s == pytest.approx(42.0)


class FlakySpecs:
    """A CMDB that does not answer at first, then declares the hpa policy."""

    def __init__(self) -> None:
        self.answering = False

    async def hints(self, app: str) -> SpecHints | None:
        if not self.answering:
            raise SpecsUnavailable("CMDB unreachable")
        return SpecHints(policy="hpa", min_replicas=1, max_replicas=20, capacity_rps=10.0)


async def test_a_model_built_while_the_cmdb_was_down_is_rebuilt_once_its_spec_is_known(
    infra: Infra, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handlers, "HINTS_RETRY_S", 0.2)
    monkeypatch.setattr(handlers, "HINTS_TICK_S", 0.05)
    specs = FlakySpecs()
    async with running_service(
        infra, "decision", Settings, lambda s: create_app(s, specs=specs), MIGRATIONS
    ) as svc:
        app = unique("app")
        now = datetime.now(UTC).replace(microsecond=0)
        await publish(svc, window(app, now - 3 * STEP, 10.0, 2))
        (first,) = await decisions(svc, app, 1)
        assert first["policy"] == "predictive"  # the service default, while the spec is unknown
        # The refresher asks again in the background; the model is rebuilt at the next window.
        specs.answering = True
        engine = svc.app.state.engine
        async with asyncio.timeout(10):
            while app not in engine.fresh_hints:
                await asyncio.sleep(0.05)
        await publish(svc, window(app, now - 2 * STEP, 10.0, 2))
        latest = (await decisions(svc, app, 2))[-1]
        assert latest["policy"] == "hpa"  # the declared policy, on the same history
        assert app not in engine.fresh_hints
        # A spec that stays the same rebuilds nothing.
        engine.models[app].hints_checked = 0.0
        async with asyncio.timeout(10):
            while engine.models[app].hints_checked == 0.0:
                await asyncio.sleep(0.05)
        assert app not in engine.fresh_hints
