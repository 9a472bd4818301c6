"""Parsing a target's exposition, the series cap, and the per-target scrape record."""

from datetime import UTC, datetime

import pytest

from monitor.domain import (
    ExpositionError,
    Target,
    parse_exposition,
    record_scrape,
    scrape_failed,
)

pytestmark = pytest.mark.unit

AT = datetime(2025, 1, 1, tzinfo=UTC)
EXPOSITION = """\
# HELP http_requests_total Requests served
# TYPE http_requests_total counter
http_requests_total{status="200",method="GET"} 120
http_requests_total{method="GET",status="500"} 3
# TYPE http_requests_in_flight gauge
http_requests_in_flight 2
"""


def many_series(count: int) -> str:
    return "".join(f'cache_entries{{cache="c{i}"}} {i}\n' for i in range(count))


def test_samples_are_keyed_by_name_and_sorted_labels():
    exposition = parse_exposition(EXPOSITION)

    assert exposition.samples == {
        ("http_requests_total", (("method", "GET"), ("status", "200"))): 120.0,
        ("http_requests_total", (("method", "GET"), ("status", "500"))): 3.0,
        ("http_requests_in_flight", ()): 2.0,
    }
    assert exposition.dropped == 0


def test_series_past_the_cap_are_dropped_and_counted():
    exposition = parse_exposition(many_series(10), series_limit=3)

    assert list(exposition.samples) == [("cache_entries", (("cache", f"c{i}"),)) for i in range(3)]
    assert exposition.dropped == 7


def test_a_malformed_exposition_names_the_offending_line():
    text = 'ok_total 1\n# TYPE temp gauge\ntemp{room="a" 21.5\nlater 2\n'

    with pytest.raises(ExpositionError) as caught:
        parse_exposition(text)

    assert caught.value.line_number == 3
    assert caught.value.line == 'temp{room="a" 21.5'
    assert "line 3" in str(caught.value)
    assert 'temp{room="a" 21.5' in str(caught.value)


def test_a_target_serving_garbage_is_marked_down_with_the_parse_error_and_others_are_unaffected():
    good = Target("shop", "shop-1", "http://127.0.0.1:9001/metrics")
    bad = Target("shop", "shop-2", "http://127.0.0.1:9002/metrics")

    results = [
        record_scrape(good, AT, 0.004, EXPOSITION),
        record_scrape(bad, AT, 0.003, "<html>502 Bad Gateway</html>\n"),
    ]

    assert [r.up for r in results] == [True, False]
    assert results[0].snapshot is not None and results[0].series == 3
    assert results[1].snapshot is None
    assert results[1].last_error is not None and "line 1" in results[1].last_error


def test_a_scrape_record_counts_kept_and_dropped_series():
    target = Target("shop", "shop-1", "http://127.0.0.1:9001/metrics")

    result = record_scrape(target, AT, 0.01, many_series(8), series_limit=5)

    assert (result.up, result.series, result.dropped, result.last_error) == (True, 5, 3, None)
    assert result.snapshot is not None and result.snapshot.at == AT


def test_a_failed_fetch_is_recorded_as_down_with_its_error():
    target = Target("shop", "shop-1", "http://127.0.0.1:9001/metrics")

    result = scrape_failed(target, AT, 2.0, "timed out after 2.0 s")

    assert (result.up, result.last_error, result.series, result.snapshot) == (
        False,
        "timed out after 2.0 s",
        0,
        None,
    )
