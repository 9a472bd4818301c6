"""Push ingestion: good batches are stored and aggregated, bad ones rejected with nothing stored."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from monitor.store import pushed_samples
from ooda.events import Event, MetricObserved
from ooda.testing import unique

pytestmark = pytest.mark.integration


async def stored(running, app: str) -> int:
    async with running.app.state.runtime.sessions() as session:
        query = select(func.count()).where(pushed_samples.c.app == app)
        return int((await session.execute(query)).scalar_one())


def counters(value: float) -> str:
    return (
        "# TYPE http_requests_total counter\n"
        f'http_requests_total{{status="200"}} {value}\n'
        f'http_requests_total{{status="500"}} {value / 10}\n'
    )


async def test_pushed_samples_are_validated_stored_whole_and_aggregated(
    env, fleet, run_monitor
) -> None:
    app = unique("batch")
    fleet.owners[app] = "batch"
    pusher = env.auth("agent", "metrics:push", "team:batch")
    # The CMDB lists no instance here (it only names the owner): the monitor sees what is pushed.
    settings = env.settings(cmdb_url=fleet.url)
    async with run_monitor(settings) as running:
        client = running.client
        good = {
            "app": app,
            "instance": "job-1",
            "samples": [
                {"name": "http_requests_total", "labels": {"status": "200"}, "value": 100},
                {"name": "http_requests_total", "labels": {"status": "500"}, "value": 10},
                {"name": "http_requests_in_flight", "value": 2},
            ],
        }
        assert (await client.post("/v1/push", json=good)).status_code == 401
        denied = await client.post("/v1/push", json=good, headers=env.auth("x", "alerts:write"))
        assert denied.status_code == 403

        half_bad = good | {"samples": [*good["samples"], {"name": "9bad name", "value": 1}]}
        answer = await client.post("/v1/push", json=half_bad, headers=pusher)
        assert answer.status_code == 422 and "samples" in answer.text
        not_a_number = good | {"samples": [{"name": "x", "value": "NaN"}]}
        assert (await client.post("/v1/push", json=not_a_number, headers=pusher)).status_code == 422
        garbage = counters(1) + "http_requests_total{status=200 oops\n"
        answer = await client.post(
            "/v1/push",
            content=garbage,
            params={"app": app, "instance": "job-1"},
            headers=pusher | {"Content-Type": "text/plain"},
        )
        assert answer.status_code == 422 and "line 4" in answer.json()["detail"][0]["msg"]
        no_app = await client.post(
            "/v1/push", content=counters(1), headers=pusher | {"Content-Type": "text/plain"}
        )
        assert no_app.status_code == 422 and "app" in no_app.json()["detail"][0]["msg"]
        xml = await client.post(
            "/v1/push", content="<x/>", headers=pusher | {"Content-Type": "application/xml"}
        )
        assert xml.status_code == 415
        assert await stored(running, app) == 0

        created = await client.post("/v1/push", json=good, headers=pusher)
        assert created.status_code == 201, created.text
        assert created.json()["series"] == 3
        await asyncio.sleep(1.0)
        for value in (300.0, 500.0):
            answer = await client.post(
                "/v1/push",
                content=counters(value),
                params={"app": app, "instance": "job-1"},
                headers=pusher | {"Content-Type": "text/plain; version=0.0.4"},
            )
            assert answer.status_code == 201, answer.text
            await asyncio.sleep(1.0)
        # Only the two newest pushes of an instance are kept.
        assert await stored(running, app) == 2

        def rated(found: list[Event]) -> list[MetricObserved]:
            return [
                e.data
                for e in found
                if isinstance(e.data, MetricObserved)
                and e.data.app == app
                and e.data.values.request_rate
            ]

        events = await env.events("metric-observed", lambda found: bool(rated(found)))
        window = rated(events)[0]
        assert window.instance_count == 1
        assert window.values.error_rate == pytest.approx(1 / 11, rel=0.01)
        assert 100.0 < window.values.request_rate < 300.0
