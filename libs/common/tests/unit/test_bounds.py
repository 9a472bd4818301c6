"""The bounds every service applies at its edge."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import TypeAdapter, ValidationError

from ooda.bounds import Count32, Count64, Finite, HostPort, Moment, ShortText, split_host_port

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("endpoint", "host", "port"),
    [
        ("web-1.internal:8080", "web-1.internal", 8080),
        ("127.0.0.1:9101", "127.0.0.1", 9101),
        ("[::1]:80", "::1", 80),
        ("[fe80::1:2]:65535", "fe80::1:2", 65535),
    ],
)
def test_a_host_and_port_is_an_endpoint(endpoint: str, host: str, port: int) -> None:
    assert TypeAdapter(HostPort).validate_python(endpoint) == endpoint
    assert split_host_port(endpoint) == (host, port)


@pytest.mark.parametrize(
    "endpoint",
    [
        "h/admin:80",
        "h?x=1:80",
        "h#f:80",
        "user@h:80",
        "http://h:80",
        "h:80/metrics",
        "[babc]:80",
        "[aD:4]:80",
        "h:0",
        "h:65536",
        "h",
        "-h:80",
        "h-:80",
        "a..b:80",
        "h\x00:80",
        "",
    ],
)
def test_anything_else_is_not_an_endpoint(endpoint: str) -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(HostPort).validate_python(endpoint)
    with pytest.raises(ValueError):
        split_host_port(endpoint)


def test_numbers_are_bounded_to_their_columns_and_text_to_what_postgresql_stores() -> None:
    assert TypeAdapter(Count32).validate_python(2**31 - 1) == 2**31 - 1
    assert TypeAdapter(Count64).validate_python(2**63 - 1) == 2**63 - 1
    for adapter, value in (
        (TypeAdapter(Count32), 2**31),
        (TypeAdapter(Count32), -1),
        (TypeAdapter(Count64), 2**63),
        (TypeAdapter(Finite), float("inf")),
        (TypeAdapter(Finite), float("nan")),
        (TypeAdapter(Finite), 1e301),
        (TypeAdapter(ShortText), "a\x00b"),
        (TypeAdapter(ShortText), "x" * 201),
        (TypeAdapter(Moment), datetime(9999, 12, 31, tzinfo=UTC)),
        (TypeAdapter(Moment), datetime(1, 1, 1, tzinfo=UTC)),
    ):
        with pytest.raises(ValidationError):
            adapter.validate_python(value)
