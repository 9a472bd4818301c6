"""Downsampling and retention of stored rollups, and range queries over the coarser tier."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from monitor.domain import AppRollup, Histogram, Metric, align
from monitor.handlers import publish_rollup
from monitor.store import rollups
from ooda.testing import free_port, unique

pytestmark = pytest.mark.integration


def window(app: str, start: datetime, rate: float) -> AppRollup:
    end = start + timedelta(seconds=1)
    return AppRollup(
        app_id=app,
        window_start=start,
        window_end=end,
        values={Metric.REQUEST_RATE: rate, Metric.ERROR_RATE: 0.1},
        instance_count=2,
        staleness_s=0.1,
        requests=rate,
        errors=rate / 10,
        latency=Histogram((0.1, float("inf")), (rate, rate)),
    )


async def test_old_windows_are_downsampled_then_deleted_and_still_answer_range_queries(
    env, run_monitor
) -> None:
    app = unique("old")
    settings = env.settings(cmdb_url=f"http://127.0.0.1:{free_port()}")
    async with run_monitor(settings) as running:
        rt, monitor = running.app.state.runtime, running.app.state.monitor
        # 24 one-second windows seven hours ago: past the 6 h of the finest tier, 2 windows of 12 s.
        start = align(datetime.now(UTC) - timedelta(hours=7), timedelta(seconds=120))
        async with rt.sessions() as session, session.begin():
            for i in range(24):
                await publish_rollup(
                    session, rt.outbox, window(app, start + timedelta(seconds=i), 10.0 + i), 1.0
                )
        assert await monitor.retain(rt) >= 2
        assert await monitor.retain(rt) == 0  # nothing left to merge: the job is idempotent
        async with rt.sessions() as session:
            rows = (await session.execute(select(rollups).where(rollups.c.app == app))).all()
        # The 1 s windows are gone, merged into 12 s windows, themselves merged into 120 s.
        assert sorted((r.step_s, r.window_start) for r in rows) == [
            (12.0, start),
            (12.0, start + timedelta(seconds=12)),
            (120.0, start),
        ]
        first = next(r for r in rows if r.step_s == 12.0 and r.window_start == start)
        assert first.values["request_rate"] == pytest.approx(sum(10.0 + i for i in range(12)) / 12)
        assert first.requests == pytest.approx(sum(10.0 + i for i in range(12)))

        answer = await running.client.get(
            f"/v1/apps/{app}/metrics",
            params={
                "metric": "error_rate",
                "start": start.isoformat(),
                "step": 24,
                "end": (start + timedelta(seconds=24)).isoformat(),
            },
        )
        assert answer.status_code == 200, answer.text
        (point,) = answer.json()["points"]
        assert point["value"] == pytest.approx(0.1)
