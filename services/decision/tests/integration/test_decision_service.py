"""The decision service in-process on real Kafka and PostgreSQL: it learns load from events."""

from __future__ import annotations

import asyncio

import pytest

from decision.config import Settings
from decision.main import MIGRATIONS, create_app
from ooda.events import MetricObserved
from ooda.examples import example_payloads
from ooda.testing import Infra, running_service, unique

pytestmark = pytest.mark.integration


async def test_observations_published_by_another_service_become_load_history(infra: Infra) -> None:
    async with running_service(infra, "decision", Settings, create_app, MIGRATIONS) as svc:
        rt = svc.app.state.runtime
        app = unique("app")
        payload = next(p for p in example_payloads(app) if isinstance(p, MetricObserved))
        # Publish through this service's own outbox, as the monitor would through its own.
        async with rt.sessions() as session, session.begin():
            rt.outbox.add(session, payload)
        async with asyncio.timeout(30):
            while not (await svc.client.get(f"/v1/apps/{app}/load")).json():
                await asyncio.sleep(0.2)
        (point,) = (await svc.client.get(f"/v1/apps/{app}/load")).json()
        assert point["request_rate"] == payload.values.request_rate
        assert (await svc.client.get("/readyz")).status_code == 200
