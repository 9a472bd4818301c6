"""The parser's fast path gives exactly prometheus-client's result, or steps aside."""

import math

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary
from prometheus_client.exposition import generate_latest

from monitor.domain.scrape import (
    ExpositionError,
    _parse_plain,
    _parse_with_client,
    parse_exposition,
)

pytestmark = pytest.mark.unit


def client_library_text() -> str:
    """What the official client library writes, with every metric type."""
    registry = CollectorRegistry()
    requests = Counter("http_requests", "served", ["status"], registry=registry)
    requests.labels("200").inc(41)
    requests.labels("500").inc(2)
    plain = Counter("jobs_done_total", "jobs", registry=registry)
    plain.inc(3)
    Gauge("http_requests_in_flight", "now", registry=registry).set(4)
    latency = Histogram("http_request_duration_seconds", "latency", ["route"], registry=registry)
    for value in (0.004, 0.02, 0.3, 7.0):
        latency.labels("/a").observe(value)
    Summary("rpc_seconds", "rpc", registry=registry).observe(0.5)
    return generate_latest(registry).decode()


PLAIN = [
    client_library_text(),
    "# TYPE c counter\nc 1\nc_total 2\n",  # a counter sample gains _total; c_total is untyped
    '# HELP h help text with "quotes"\n# TYPE h gauge\nh 1\n',
    'x 1 1700000000000\ny{a="b",c=""} +Inf\nz NaN\n',
    "# TYPE t counter\nt_total 5\n# just a comment\n\n  u 7  \n",
    '# TYPE q summary\nq{quantile="0.5"} 1\nq_sum 2\nq_count 3\nother 4\n',
    'a{le="0.1",x="a,b}c"} 1e3\n',
]


@pytest.mark.parametrize("text", PLAIN)
def test_plain_exposition_parses_exactly_as_prometheus_client_parses_it(text: str) -> None:
    fast = parse_exposition(text, 1000)
    reference = _parse_with_client(text, 1000)
    assert fast.dropped == reference.dropped
    assert fast.samples.keys() == reference.samples.keys()
    for key, value in reference.samples.items():
        assert fast.samples[key] == value or (math.isnan(value) and math.isnan(fast.samples[key]))


def test_the_series_cap_keeps_the_same_series_on_both_paths() -> None:
    text = client_library_text()
    assert parse_exposition(text, 7) == _parse_with_client(text, 7)


@pytest.mark.parametrize(
    "text",
    [
        'x{a="esc\\"aped"} 1\n',  # escapes
        'x{a="b"}1\n',  # no space before the value
        "x 1_000\n",  # underscores in a value
        "x 1 2 3\n",  # several values
        "# TYPE\n",
        'x{__name__="y"} 1\n',
        'x{a="1",a="2"} 1\n',
        "not a sample\n",
        '# TYPE "quoted" gauge\n',
    ],
)
def test_anything_unusual_is_left_to_prometheus_client(text: str) -> None:
    assert _parse_plain(text, 1000) is None


def test_garbage_is_still_rejected_with_its_line() -> None:
    with pytest.raises(ExpositionError, match="line 2"):
        parse_exposition("ok 1\nhttp_requests_total{status=200 oops\n")
