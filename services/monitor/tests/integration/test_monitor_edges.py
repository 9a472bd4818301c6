"""Inputs at the monitor's edge, on real PostgreSQL: each is refused with a 422 naming it, in
FastAPI's shape, where it once was a server error."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from monitor.main import create_app
from ooda.testing import unique

pytestmark = pytest.mark.integration


def problems(answer: Any) -> list[list[Any]]:
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert isinstance(detail, list) and all({"loc", "msg", "type"} <= set(p) for p in detail)
    return [p["loc"] for p in detail]


async def test_range_queries_alert_filters_and_observations_are_bounded(env, run_monitor) -> None:
    app = unique("edge")
    pusher = env.auth("agent", "metrics:push")
    async with run_monitor(env.settings(cmdb_url="http://127.0.0.1:9")) as running:
        client = running.client
        metrics = f"/v1/apps/{app}/metrics"
        start = {"metric": "request_rate", "start": "2026-01-01T00:00:00Z"}
        # A step that rounds to zero once it is a timedelta divided the range by zero.
        assert problems(await client.get(metrics, params=start | {"step": "5e-324"})) == [[]]
        assert problems(await client.get(metrics, params=start | {"step": "1e300"})) == [
            ["query", "step"]
        ]
        # A string that is not a step, an end before the start: each its own 422, in shape.
        assert problems(await client.get(metrics, params={"metric": "request_rate"})) == [
            ["query", "start"]
        ]
        assert problems(
            await client.get(metrics, params=start | {"end": "2025-01-01T00:00:00Z"})
        ) == [[]]
        # PostgreSQL refuses a NUL in text: the filter is refused before it gets there.
        assert problems(await client.get("/v1/alerts", params={"app": "a\x00b"})) == [
            ["query", "app"]
        ]
        assert problems(await client.get("/v1/targets", params={"app": "a\x00b"})) == [
            ["query", "app"]
        ]
        observation = {
            "window_start": "2026-01-01T00:00:00Z",
            "window_end": "2026-01-01T00:01:00Z",
            "values": {"request_rate": 1.0},
            "instance_count": 2**31,
        }
        answer = await client.post(f"/v1/apps/{app}/observations", json=observation, headers=pusher)
        assert problems(answer) == [["body", "instance_count"]]
        rules = {
            "rules": [
                {
                    "kind": "threshold",
                    "name": "slow",
                    "metric": "latency_p99_ms",
                    "op": ">",
                    "threshold": 1,
                    "for_seconds": 4e16,
                }
            ]
        }
        answer = await client.put(
            f"/v1/apps/{app}/alert-rules", json=rules, headers=env.auth("ops", "alerts:write")
        )
        assert problems(answer) == [["body", "rules", 0, "threshold", "for_seconds"]]


async def test_readiness_names_connection_details_only_to_an_administrator(
    env, run_monitor
) -> None:
    bad_kafka = env.settings(cmdb_url="http://127.0.0.1:9", kafka_bootstrap="127.0.0.1:9")

    app = create_app(bad_kafka)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://monitor") as client:
            anonymous = await client.get("/readyz")
            admin = await client.get("/readyz", headers=env.auth("root", "admin"))
            member = await client.get("/readyz", headers=env.auth("alice", "team:a"))
    assert anonymous.status_code == admin.status_code == member.status_code == 503
    assert (
        anonymous.json()
        == member.json()
        == {
            "ready": False,
            "checks": {"database": "ok", "kafka": "unreachable"},
        }
    )
    assert admin.json()["checks"]["kafka"].startswith("unreachable: ")
    assert len(admin.json()["checks"]["kafka"]) > len("unreachable: ")
