"""The service's adapters without I/O beyond memory: SD parsing, the scraper, rules, rows."""

import asyncio
import math
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from monitor.domain import (
    AppRollup,
    Histogram,
    Metric,
    Target,
    ThresholdRule,
    merge_targets,
    refuse_unknown_hosts,
)
from monitor.metrics import LatestAggregates
from monitor.rules import expand, rule_from_spec
from monitor.schemas import RulesIn
from monitor.scraper import Scraper
from monitor.sd import ServiceDiscoveryError, targets_from_sd
from monitor.store import rollup_from_row, rollup_row

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)


def test_sd_groups_become_targets_with_their_metrics_path() -> None:
    found = targets_from_sd(
        [
            {
                "targets": ["10.0.0.1:9101"],
                "labels": {"app": "shop", "instance": "shop-1", "zone": "z1", "version": "v3"},
            },
            {
                "targets": ["10.0.0.2:9101"],
                "labels": {"app": "cart", "instance": "cart-1", "__metrics_path__": "/m"},
            },
            {"targets": ["10.0.0.3:9101"], "labels": {"zone": "z1"}},
        ]
    )
    assert found == [
        Target("cart", "cart-1", "http://10.0.0.2:9101/m"),
        Target(
            "shop",
            "shop-1",
            "http://10.0.0.1:9101/metrics",
            labels=(("version", "v3"), ("zone", "z1")),
        ),
    ]


def test_a_group_of_several_addresses_names_each_instance_by_its_address() -> None:
    found = targets_from_sd([{"targets": ["a:1", "b:2"], "labels": {"app": "shop"}}])
    assert [t.instance_id for t in found] == ["a:1", "b:2"]


@pytest.mark.parametrize("document", [{"targets": []}, [{"labels": {}}], ["x"]])
def test_a_malformed_sd_document_is_an_error_not_an_empty_fleet(document: object) -> None:
    with pytest.raises(ServiceDiscoveryError):
        targets_from_sd(document)


def scraper_for(handler: object, timeout_s: float = 1.0, max_bytes: int = 10_000) -> Scraper:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))  # type: ignore[arg-type]
    return Scraper(client, timeout_s=timeout_s, max_bytes=max_bytes, series_limit=2, concurrency=4)


async def test_one_slow_target_times_out_without_delaying_the_others() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "slow":
            await asyncio.sleep(5)
        return httpx.Response(200, text="a 1\nb 2\nc 3\n")

    scraper = scraper_for(handler, timeout_s=0.2)
    loop = asyncio.get_running_loop()
    began = loop.time()
    slow, fast = await scraper.scrape_all(
        [Target("app", "s", "http://slow/metrics"), Target("app", "f", "http://fast/metrics")]
    )
    assert loop.time() - began < 1.0
    assert not slow.up and slow.last_error == "timed out after 0.2s"
    assert fast.up and fast.series == 2 and fast.dropped == 1


async def test_an_oversized_body_and_an_error_status_mark_only_that_target_down() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "big":
            return httpx.Response(200, content=b"a 1\n" * 10_000)
        return httpx.Response(503)

    big, failing = await scraper_for(handler).scrape_all(
        [Target("app", "b", "http://big/metrics"), Target("app", "e", "http://err/metrics")]
    )
    assert big.last_error == "response larger than 10000 bytes"
    assert failing.last_error == "HTTP 503 from http://err/metrics"


def test_an_slo_expands_into_fast_and_slow_burn_rules_that_round_trip() -> None:
    body = RulesIn.model_validate({"rules": [{"kind": "slo", "objective": 0.999}]})
    specs = expand(body.rules[0], "shop")
    assert [s["name"] for s in specs] == [
        "slo-availability-fast-burn",
        "slo-availability-slow-burn",
    ]
    fast = rule_from_spec("shop", specs[0])
    assert fast.burn_rate == 14.4 and fast.long_window == timedelta(hours=1)  # type: ignore[union-attr]


def test_a_threshold_rule_spec_becomes_the_domain_rule() -> None:
    body = RulesIn.model_validate(
        {
            "rules": [
                {
                    "kind": "threshold",
                    "name": "p99",
                    "metric": "latency_p99_ms",
                    "op": ">",
                    "threshold": 250,
                    "for_seconds": 30,
                }
            ]
        }
    )
    (spec,) = expand(body.rules[0], "shop")
    rule = rule_from_spec("shop", spec)
    assert isinstance(rule, ThresholdRule)
    assert rule.metric is Metric.LATENCY_P99_MS and rule.for_duration == timedelta(seconds=30)


def rollup(app: str = "shop", rate: float = 12.5) -> AppRollup:
    return AppRollup(
        app_id=app,
        window_start=T0,
        window_end=T0 + timedelta(seconds=5),
        values={Metric.REQUEST_RATE: rate, Metric.LATENCY_P99_MS: None},
        instance_count=3,
        staleness_s=0.4,
        requests=62.5,
        errors=1.0,
        latency=Histogram((0.1, 0.5, math.inf), (50.0, 60.0, 62.5)),
    )


def test_a_stored_rollup_reads_back_identical_including_its_infinite_bucket() -> None:
    class Row:
        def __init__(self, values: dict[str, object]) -> None:
            self.__dict__.update(values)

    original = rollup()
    back = rollup_from_row(Row(rollup_row(original, 5.0)))
    assert back.latency == original.latency
    assert back.value(Metric.REQUEST_RATE) == 12.5
    assert back.value(Metric.LATENCY_P99_MS) is None
    assert (back.requests, back.errors, back.instance_count) == (62.5, 1.0, 3)


def test_latest_aggregates_are_exposed_with_an_app_label_and_no_value_for_no_data() -> None:
    latest = LatestAggregates()
    latest.update([rollup("shop", 10.0)])
    latest.update([rollup("shop", 11.0)])
    families = {f.name: f for f in latest.collect()}
    (sample,) = families["ooda_app_request_rate"].samples
    assert sample.labels == {"app": "shop"} and sample.value == 11.0
    assert families["ooda_app_latency_p99_ms"].samples == []
    latest.forget({"shop"})
    assert all(not f.samples for f in latest.collect())


def test_announced_targets_add_to_discovered_ones_and_the_cmdb_entry_wins() -> None:
    discovered = [Target("shop", "shop-1", "http://10.0.0.1:9101/metrics")]
    announced = [
        Target("shop", "shop-1", "http://10.0.0.9:9101/metrics", source="announced"),
        Target("shop", "alias", "http://10.0.0.1:9101/metrics", source="announced"),
        Target("shop", "shop-2", "http://10.0.0.2:9101/metrics", source="announced"),
        Target("shop", "shop-2-again", "http://10.0.0.2:9101/metrics", source="announced"),
    ]
    merged = merge_targets(discovered, announced)
    assert [(t.instance_id, t.source) for t in merged] == [
        ("shop-1", "sd"),
        ("shop-2", "announced"),
    ]
    assert merged[0].url == "http://10.0.0.1:9101/metrics"
    assert merge_targets([], []) == []


async def test_a_target_whose_url_does_not_parse_fails_alone_and_the_round_goes_on() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="a 1\n")

    broken, fine = await scraper_for(handler).scrape_all(
        [
            Target("app", "broken", "http://[babc]:80/metrics"),
            Target("app", "fine", "http://fine/metrics"),
        ]
    )
    assert not broken.up and broken.last_error is not None
    assert broken.last_error.startswith("scrape failed: ValueError")
    assert fine.up and fine.series == 1


async def test_a_refused_target_is_recorded_down_without_a_request() -> None:
    fetched: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        fetched.append(str(request.url))
        return httpx.Response(200, text="a 1\n")

    [target] = refuse_unknown_hosts([Target("app", "x", "http://10.0.0.1:80/metrics")], {"h"})
    (result,) = await scraper_for(handler).scrape_all([target])
    assert not result.up and "not a host the CMDB knows" in (result.last_error or "")
    assert fetched == []


async def test_an_answer_that_is_not_an_exposition_is_not_echoed_in_the_error() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="secret-token-123 from the metadata service\n")

    (result,) = await scraper_for(handler).scrape_all([Target("app", "x", "http://h/metrics")])
    assert not result.up and "line 1" in (result.last_error or "")
    assert "secret" not in (result.last_error or "")


@pytest.mark.parametrize(
    "change",
    [
        {"window_start": "9999-12-31T23:58:00Z", "window_end": "9999-12-31T23:59:00Z"},
        {"values": {"request_rate": 1e309}},
        {"values": {"ready_instances": 2**31}},
    ],
)
def test_an_observation_that_would_overflow_downstream_arithmetic_is_refused(
    change: dict[str, object],
) -> None:
    from pydantic import ValidationError

    from monitor.schemas import ObservationIn

    fine = {
        "window_start": "2026-01-01T00:00:00Z",
        "window_end": "2026-01-01T00:01:00Z",
        "values": {"request_rate": 1.0},
        "instance_count": 1,
    }
    ObservationIn.model_validate(fine)
    with pytest.raises(ValidationError):
        ObservationIn.model_validate(fine | change)
