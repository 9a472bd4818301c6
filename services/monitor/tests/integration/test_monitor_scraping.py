"""The monitor on real Kafka and PostgreSQL scraping real HTTP targets found through CMDB SD."""

from __future__ import annotations

import asyncio
import statistics
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ooda.events import CmdbChanged, Event, MetricObserved
from ooda.events.contracts import ItemChange
from ooda.testing import ProducerOutbox, unique

pytestmark = pytest.mark.integration

# Instance b of the shop is slow on every 10th request and fails every 20th; a is always fast.
# Combined, 396 of every 400 requests are at most 80 ms and 4 take 400 ms: the raw p99 is 400 ms.
# Averaging the instances' own p99s (about 25 ms and 475 ms) would give about 250 ms instead.
SLOW = [0.08] * 9 + [0.4]
FAILING = ["200"] * 19 + ["500"]
RAW_P99_MS = 400.0


def observed(events: list[Event], app: str) -> list[MetricObserved]:
    found = [e.data for e in events if isinstance(e.data, MetricObserved) and e.data.app == app]
    return sorted(found, key=lambda o: o.window_end)


def full_windows(events: list[Event], app: str, instances: int) -> list[MetricObserved]:
    """Windows where every instance was scraped twice, so the rate covers them all."""
    return [
        o
        for o in observed(events, app)
        if o.values.request_rate is not None
        and o.instance_count == instances
        and o.values.ready_instances == instances
    ]


async def announce_cmdb_change(app: Any, application: str) -> None:
    """Publish cmdb-changed as the CMDB would (in its name, through the monitor's relay)."""
    rt = app.state.runtime
    outbox = ProducerOutbox(rt.messaging, "monitor", rt.outbox.topic_prefix)
    async with rt.sessions() as session, session.begin():
        outbox.add(
            session,
            CmdbChanged(
                app=application,
                change_set_id=unique("cs"),
                actor="test",
                items=[ItemChange(type="instance", id=unique("i"), op="create")],
            ),
        )


async def test_discovered_instances_are_aggregated_per_app_per_window_with_merged_p99(
    env, fleet, run_monitor, wait_for
) -> None:
    shop, cart = unique("shop"), unique("cart")
    fleet.spawn(shop, "shop-a", rate=300.0)
    fleet.spawn(shop, "shop-b", rate=100.0, latencies=SLOW, statuses=FAILING)
    fleet.spawn(cart, "cart-a", rate=50.0, extra_series=500)
    fleet.spawn(cart, "cart-garbage", rate=10.0, garbage=True)
    fleet.spawn(cart, "cart-stuck", rate=10.0, delay_s=3.0)
    # SD is re-read only every 60 s on its own: changes below arrive through cmdb-changed.
    settings = env.settings(
        cmdb_url=fleet.url,
        sd_refresh_seconds=60.0,
        scrape_timeout_seconds=0.5,
        series_limit=300,
    )
    async with run_monitor(settings) as running:
        events = await env.events(
            "metric-observed",
            lambda found: (
                len(full_windows(found, shop, 2)) >= 4 and len(full_windows(found, cart, 1)) >= 2
            ),
        )
        windows = full_windows(events, shop, 2)
        rates = [o.values.request_rate for o in windows]
        # The median is exact; a single window moves by as much as a scrape was delayed on a
        # loaded machine (the next one by as much the other way), so each is only near it.
        assert statistics.median(rates) == pytest.approx(400.0, rel=0.05)
        assert all(r == pytest.approx(400.0, rel=0.3) for r in rates), rates
        p99s = [o.values.latency_p99_ms for o in windows]
        assert statistics.median(p99s) == pytest.approx(RAW_P99_MS, rel=0.1)
        assert statistics.median(o.values.error_rate for o in windows) == pytest.approx(
            0.0125, rel=0.3
        )
        assert windows[-1].values.cpu_utilisation == pytest.approx(0.25, rel=0.1)
        assert windows[-1].values.in_flight == 6.0
        assert windows[-1].values.load_per_instance == pytest.approx(
            windows[-1].values.request_rate / 2
        )
        for o in windows:
            assert o.window_end - o.window_start == timedelta(seconds=1)
            assert o.window_end.microsecond == 0
            assert 0 <= o.staleness_s < 2.0
        # The garbage and the stuck instances are reported; the cart publishes from its good one,
        # whose label explosion is capped and counted.
        cart_windows = full_windows(events, cart, 1)
        assert cart_windows[-1].values.request_rate == pytest.approx(50.0, rel=0.1)
        targets = {t["instance_id"]: t for t in (await running.client.get("/v1/targets")).json()}
        assert targets["cart-garbage"]["up"] is False
        assert "malformed exposition" in targets["cart-garbage"]["last_error"]
        assert targets["cart-stuck"]["up"] is False
        assert "timed out" in targets["cart-stuck"]["last_error"]
        assert all(targets[n]["up"] for n in ("shop-a", "shop-b", "cart-a"))
        assert targets["shop-a"]["series"] > 10 and targets["shop-a"]["dropped"] == 0
        assert targets["cart-a"]["series"] == 300
        assert targets["cart-a"]["dropped"] == 500 - (300 - targets["shop-a"]["series"])
        # Exactly one observation per application per window.
        keys = Counter((e.data.app, e.data.window_end) for e in events)
        assert max(keys.values()) == 1

        # A new instance announced by the CMDB is scraped well before the next SD refresh.
        fleet.spawn(shop, "shop-c", rate=100.0)
        await announce_cmdb_change(running.app, shop)

        async def shop_c_scraped() -> bool:
            found = (await running.client.get("/v1/targets", params={"app": shop})).json()
            return any(t["instance_id"] == "shop-c" and t["up"] for t in found)

        await wait_for(shop_c_scraped, timeout=15)
        # A removed instance disappears.
        fleet.listed.discard("cart-garbage")
        await announce_cmdb_change(running.app, cart)

        async def garbage_gone() -> bool:
            found = (await running.client.get("/v1/targets")).json()
            return "cart-garbage" not in {t["instance_id"] for t in found}

        await wait_for(garbage_gone, timeout=15)
        events = await env.events(
            "metric-observed", lambda found: len(full_windows(found, shop, 3)) >= 4
        )
        # From shop-c's second window on its rate counts too; the median is robust to one
        # window whose scrapes a loaded machine delayed (a rate over an uneven interval).
        rates = [o.values.request_rate for o in full_windows(events, shop, 3)[1:]]
        assert statistics.median(r for r in rates if r is not None) == pytest.approx(500.0, rel=0.1)

        # Range queries recombine the stored windows at a coarser step.
        start = windows[0].window_start
        answer = await running.client.get(
            f"/v1/apps/{shop}/metrics",
            params={"metric": "request_rate", "start": start.isoformat(), "step": 2},
        )
        assert answer.status_code == 200, answer.text
        points = answer.json()["points"]
        assert len(points) >= 2
        assert all(
            datetime.fromisoformat(p["window_end"]) - datetime.fromisoformat(p["window_start"])
            == timedelta(seconds=2)
            for p in points
        )
        assert points[1]["value"] == pytest.approx(400.0, rel=0.1)
        bad = await running.client.get(
            f"/v1/apps/{shop}/metrics",
            params={"metric": "request_rate", "start": start.isoformat(), "step": 1.5},
        )
        assert bad.status_code == 422 and "multiple of the interval" in bad.text

        # /metrics exposes the aggregates with application labels, and the scrape health.
        exposed = (await running.client.get("/metrics")).text
        assert f'ooda_app_request_rate{{app="{shop}"}}' in exposed
        assert f'ooda_monitor_targets_up{{app="{cart}"}} 1.0' in exposed
        assert f'ooda_monitor_dropped_series_total{{app="{cart}"}}' in exposed
        assert "ooda_monitor_scrape_duration_seconds_count" in exposed


async def test_a_restarted_monitor_publishes_no_window_twice(
    env, fleet, run_monitor, wait_for
) -> None:
    app = unique("restart")
    fleet.spawn(app, "r-a", rate=20.0)
    settings = env.settings(cmdb_url=fleet.url)
    async with run_monitor(settings):
        first = await env.events("metric-observed", lambda f: len(observed(f, app)) >= 3)
    # The same database and topics: the restarted monitor computes the same window boundaries.
    async with run_monitor(settings) as running:
        last_before = max(o.window_end for o in observed(first, app))
        events = await env.events(
            "metric-observed",
            lambda f: sum(o.window_end > last_before for o in observed(f, app)) >= 3,
        )
        # Publish again the window just published, as a monitor racing its successor might.
        rt = running.app.state.runtime
        monitor = running.app.state.monitor
        again = max(o.window_end for o in observed(events, app))
        await asyncio.sleep(0.1)
        made = await monitor.run_round(rt, again)
        assert any(r.app_id == app for r in made)
    events = await env.events("metric-observed", lambda f: len(observed(f, app)) >= 6)
    ends = [o.window_end for o in observed(events, app)]
    assert len(ends) == len(set(ends))
    assert datetime.now(UTC) - max(ends) < timedelta(seconds=30)
