"""Bounds every service applies at its edge: numbers that fit their columns, text without NUL
and within its column, endpoints that are strictly `host:port`.

PostgreSQL refuses a NUL in text and a number past its column's type; checked here, such input is
a 422 naming the field instead of a database error. Use these types in request models, path and
query parameters alike (`Annotated[ShortText, Query()]` keeps the bounds)."""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
FLOAT_MAX = 1e300
"""Far beyond any real quantity, and far from overflowing arithmetic (rates, sums, products)."""

Int32 = Annotated[int, Field(ge=-INT32_MAX - 1, le=INT32_MAX)]
"""A PostgreSQL `integer`."""
Count32 = Annotated[int, Field(ge=0, le=INT32_MAX)]
"""A non-negative PostgreSQL `integer` (a count)."""
Positive32 = Annotated[int, Field(ge=1, le=INT32_MAX)]
"""A positive PostgreSQL `integer` (a size, a replica count)."""
Int64 = Annotated[int, Field(ge=-INT64_MAX - 1, le=INT64_MAX)]
"""A PostgreSQL `bigint`."""
Count64 = Annotated[int, Field(ge=0, le=INT64_MAX)]
"""A non-negative PostgreSQL `bigint`."""
Positive64 = Annotated[int, Field(ge=1, le=INT64_MAX)]
"""A positive PostgreSQL `bigint`."""
Finite = Annotated[float, Field(ge=-FLOAT_MAX, le=FLOAT_MAX, allow_inf_nan=False)]
"""A float that is a number (no NaN or infinity) and leaves room for arithmetic."""

MAX_SECONDS = 10 * 366 * 86400.0
"""The longest duration any input may give (ten years): far within `timedelta`'s range."""
Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False)]
"""A duration in seconds, zero or more."""
PositiveSeconds = Annotated[float, Field(gt=0, le=MAX_SECONDS, allow_inf_nan=False)]
"""A duration in seconds, more than zero."""

MAX_DURATION = timedelta(seconds=MAX_SECONDS)
Duration = Annotated[timedelta, Field(ge=timedelta(0), le=MAX_DURATION)]
"""A duration (seconds or ISO 8601), zero to ten years."""

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)


def _within_time(moment: datetime) -> datetime:
    if moment.tzinfo is not None and not EARLIEST <= moment < LATEST:
        raise ValueError("must be between 1970 and 3000")
    return moment


Moment = Annotated[datetime, AfterValidator(_within_time)]
"""A point in time between 1970 and 3000: any computation around it (windows, retention, the
next step) stays within `datetime`'s range. (Whether it needs a timezone is the caller's rule.)"""

NO_NUL = r"^[^\x00]*$"
"""Any text PostgreSQL can store: everything but the NUL character."""


NoNul = StringConstraints(pattern=NO_NUL)
"""Metadata for a string without NUL: `Annotated[str, NoNul, Field(max_length=...)]`."""

Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_NUL)]
"""A name, an actor, a short label: 1 to 200 characters."""
ShortText = Annotated[str, StringConstraints(max_length=200, pattern=NO_NUL)]
"""A short text (a filter, a headline): up to 200 characters."""
LongText = Annotated[str, StringConstraints(max_length=2000, pattern=NO_NUL)]
"""A free-text reason or summary: up to 2000 characters."""

MAX_LIST = 1000
"""The most items a request body's list may hold unless a route says otherwise."""

_HOST_LABEL = r"(?!-)[a-zA-Z0-9-]{1,63}(?<!-)"
_HOST_NAME = re.compile(rf"^{_HOST_LABEL}(\.{_HOST_LABEL})*\.?$")
HOST_PORT_PATTERN = r"^(\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9][a-zA-Z0-9.-]*):[0-9]{1,5}$"
"""The shape of `host:port` (the validator below checks the rest: labels, IPv6, port range)."""


def split_host_port(endpoint: str) -> tuple[str, int]:
    """`host` (brackets removed for IPv6) and `port` of a strict `host:port`; ValueError if not.

    No scheme, user, path, query or fragment: an endpoint names a socket, nothing more, so it
    can never steer a fetch built from it to another URL."""
    if not re.fullmatch(HOST_PORT_PATTERN, endpoint):
        raise ValueError(f"{endpoint!r:.80} is not host:port")
    host, _, port_text = endpoint.rpartition(":")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is not between 1 and 65535")
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"{host!r:.80} is not an IPv6 address") from None
        return host[1:-1], port
    if len(host) > 253 or not _HOST_NAME.match(host):
        raise ValueError(f"{host!r:.80} is not a host name or IPv4 address")
    return host, port


def _host_port(endpoint: str) -> str:
    split_host_port(endpoint)
    return endpoint


HostPort = Annotated[
    str,
    StringConstraints(max_length=300, pattern=HOST_PORT_PATTERN),
    AfterValidator(_host_port),
    Field(description="host:port (a host name, an IPv4 address or a bracketed IPv6 address)"),
]
"""An instance's endpoint: strictly `host:port`."""
