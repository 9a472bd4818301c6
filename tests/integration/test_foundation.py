"""Every service runs as a real process on real Kafka and PostgreSQL, and an event crosses them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from openapi_spec_validator import validate

from ooda.testing import SERVICES, unique

from .conftest import Platform

pytestmark = pytest.mark.integration

TEAM = "agents"
PUSH = ("metrics:push", f"team:{TEAM}")
"""An agent's scopes: it pushes only for applications its team owns in the CMDB."""


@pytest.fixture
async def app_id(platform: Platform, http: httpx.AsyncClient) -> str:
    """A new application, declared in the CMDB as owned by `TEAM`."""
    app = unique("app")
    declared = await http.put(
        f"{platform.url('cmdb')}/v1/apps/{app}",
        json={"owner_team": TEAM},
        headers=platform.token("owner", f"team:{TEAM}"),
    )
    assert declared.status_code == 201, declared.text
    return app


def observation(minute: int, rate: float) -> dict[str, Any]:
    start = datetime(2026, 11, 30, 12, 0, tzinfo=UTC) + timedelta(minutes=minute)
    return {
        "window_start": start.isoformat(),
        "window_end": (start + timedelta(minutes=1)).isoformat(),
        "values": {"request_rate": rate, "ready_instances": 2},
        "instance_count": 2,
    }


async def load_of(http: httpx.AsyncClient, platform: Platform, app: str) -> list[dict[str, Any]]:
    response = await http.get(f"{platform.url('decision')}/v1/apps/{app}/load")
    response.raise_for_status()
    return list(response.json())


async def wait_for_load(
    http: httpx.AsyncClient, platform: Platform, app: str, count: int, timeout_s: float = 30
) -> list[dict[str, Any]]:
    async with asyncio.timeout(timeout_s):
        while len(points := await load_of(http, platform, app)) < count:
            await asyncio.sleep(0.2)
    return points


@pytest.mark.parametrize("service", SERVICES)
async def test_every_service_is_alive_ready_and_describes_its_api(
    platform: Platform, http: httpx.AsyncClient, service: str
) -> None:
    base = platform.url(service)
    assert (await http.get(f"{base}/healthz")).json() == {"status": "ok", "service": service}
    ready = await http.get(f"{base}/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "kafka": "ok"}
    spec = (await http.get(f"{base}/openapi.json")).json()
    validate(spec)  # raises on an invalid OpenAPI document
    assert "/readyz" in spec["paths"]
    metrics = (await http.get(f"{base}/metrics")).text
    assert "ooda_outbox_backlog" in metrics


async def test_an_observation_travels_from_monitor_to_decision_through_kafka(
    platform: Platform, http: httpx.AsyncClient, app_id: str
) -> None:
    posted = await http.post(
        f"{platform.url('monitor')}/v1/apps/{app_id}/observations",
        json=observation(0, 120.0),
        headers=platform.token("agent-7", *PUSH),
    )
    assert posted.status_code == 201, posted.text
    assert posted.json()["recorded_by"] == "agent-7"
    (point,) = await wait_for_load(http, platform, app_id, 1)
    assert point["request_rate"] == 120.0 and point["event_id"] == posted.json()["event_id"]
    assert point["trace_id"] and len(point["trace_id"]) == 32


async def test_posting_the_same_window_twice_publishes_one_event(
    platform: Platform, http: httpx.AsyncClient, app_id: str
) -> None:
    url = f"{platform.url('monitor')}/v1/apps/{app_id}/observations"
    headers = platform.token("agent-7", *PUSH)
    first = await http.post(url, json=observation(1, 50.0), headers=headers)
    again = await http.post(url, json=observation(1, 99.0), headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["created"] is False and again.json()["event_id"] == first.json()["event_id"]
    await http.post(url, json=observation(2, 60.0), headers=headers)
    points = await wait_for_load(http, platform, app_id, 2)
    assert [p["request_rate"] for p in points] == [50.0, 60.0]


async def test_writes_need_a_token_with_the_right_scope_and_valid_input(
    platform: Platform, http: httpx.AsyncClient, app_id: str
) -> None:
    url = f"{platform.url('monitor')}/v1/apps/{app_id}/observations"
    assert (await http.post(url, json=observation(0, 1.0))).status_code == 401
    wrong = await http.post(url, json=observation(0, 1.0), headers=platform.token("x", "team:a"))
    assert wrong.status_code == 403
    pusher = platform.token("agent", *PUSH)
    negative = await http.post(url, json=observation(0, -5.0), headers=pusher)
    assert negative.status_code == 422 and "request_rate" in negative.text
    backwards = observation(0, 1.0) | {"window_end": "2026-11-30T11:00:00+00:00"}
    refused = await http.post(url, json=backwards, headers=pusher)
    assert refused.status_code == 422
    assert "window_end must be after window_start" in refused.text
    bad_app = f"{platform.url('monitor')}/v1/apps/Not_Valid!/observations"
    assert (
        await http.post(bad_app, json=observation(0, 1.0), headers=platform.token("a", "admin"))
    ).status_code == 422


async def test_a_garbage_message_is_dead_lettered_and_the_loop_goes_on(
    platform: Platform, http: httpx.AsyncClient, app_id: str
) -> None:
    topic = platform.prefix + "metric-observed"
    producer = AIOKafkaProducer(**platform.infra.kafka().options())
    await producer.start()
    marker = unique("garbage").encode()
    try:
        await producer.send_and_wait(topic, key=app_id.encode(), value=b"{oops " + marker)
    finally:
        await producer.stop()
    posted = await http.post(
        f"{platform.url('monitor')}/v1/apps/{app_id}/observations",
        json=observation(3, 7.0),
        headers=platform.token("agent-7", *PUSH),
    )
    assert posted.status_code == 201
    await wait_for_load(http, platform, app_id, 1)
    consumer = AIOKafkaConsumer(
        topic + ".dlq",
        **platform.infra.kafka().options(),
        auto_offset_reset="earliest",
        group_id=unique("dlq-reader"),
    )
    await consumer.start()
    try:
        async with asyncio.timeout(30):
            found = None
            while found is None:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    found = next((r for r in records if marker in (r.value or b"")), found)
    finally:
        await consumer.stop()
    headers = dict(found.headers)
    assert b"not a CloudEvent" in headers["ooda_dlq_error"]
    assert headers["ooda_dlq_consumer"] == (platform.prefix + "ooda-decision").encode()


async def test_killing_the_consumer_loses_no_event_and_repeats_no_effect(
    platform: Platform, http: httpx.AsyncClient, app_id: str
) -> None:
    decision = platform.services["decision"]
    url = f"{platform.url('monitor')}/v1/apps/{app_id}/observations"
    headers = platform.token("agent-7", *PUSH)
    for minute in range(3):
        assert (
            await http.post(url, json=observation(minute, minute), headers=headers)
        ).status_code == 201
    decision.kill()
    for minute in range(3, 6):
        assert (
            await http.post(url, json=observation(minute, minute), headers=headers)
        ).status_code == 201
    decision.start()
    await decision.wait_ready()
    points = await wait_for_load(http, platform, app_id, 6)
    assert [p["request_rate"] for p in points] == [0, 1, 2, 3, 4, 5]
