"""CloudEvents 1.0 in Kafka binary mode: `ce_*` headers, JSON value, application id as the key."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from ooda.events.contracts import Payload, spec_for_payload, spec_for_type

Headers = list[tuple[str, bytes]]
CONTENT_TYPE = "application/json"


class DecodeError(ValueError):
    """A Kafka record is not a valid platform event; `reason` says why."""


class UnknownEventType(DecodeError):
    """A well-formed CloudEvent of a type this reader does not know (newer producer, other team)."""


@dataclass(frozen=True)
class Event:
    """One platform event: CloudEvents attributes plus a typed payload."""

    type: str
    source: str
    data: Payload
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    traceparent: str | None = None
    tracestate: str | None = None

    @classmethod
    def new(cls, data: Payload, source: str, **kw: Any) -> Event:
        """Wrap a payload in a new event of its registered type."""
        return cls(type=spec_for_payload(data).type, source=source, data=data, **kw)

    @property
    def subject(self) -> str:
        """The application the event is about."""
        return self.data.app

    @property
    def topic(self) -> str:
        """The topic that carries this event type."""
        return spec_for_payload(self.data).topic


def _iso(ts: datetime) -> str:
    text = ts.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def encode(event: Event) -> tuple[bytes, Headers, bytes]:
    """Kafka key, headers and value of an event in CloudEvents binary mode."""
    headers: Headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", event.id.encode()),
        ("ce_source", event.source.encode()),
        ("ce_type", event.type.encode()),
        ("ce_subject", event.subject.encode()),
        ("ce_time", _iso(event.time).encode()),
        ("content-type", CONTENT_TYPE.encode()),
    ]
    if event.traceparent:
        headers.append(("traceparent", event.traceparent.encode()))
    if event.tracestate:
        headers.append(("tracestate", event.tracestate.encode()))
    return event.subject.encode(), headers, event.data.model_dump_json().encode()


def header(headers: Headers | None, name: str) -> str | None:
    """The last value of a header as text, or None."""
    found = None
    for key, value in headers or ():
        if key == name and value is not None:
            found = value.decode("utf-8", "replace")
    return found


REQUIRED = ("ce_specversion", "ce_id", "ce_source", "ce_type")

# The longest value each header may carry, in bytes. Consumers store these attributes (the event
# id in inboxes and in columns as narrow as 64 characters, the source in actors, the trace context
# with changes), so a longer one is refused here: the record is dead-lettered with the reason
# instead of failing every write that stores it. Platform event ids are UUIDs (36 characters).
HEADER_LIMITS = {
    "ce_specversion": 16,
    "ce_id": 64,
    "ce_source": 200,
    "ce_type": 200,
    "ce_subject": 128,
    "ce_time": 64,
    "content-type": 200,
    "traceparent": 128,
    "tracestate": 512,
}


def decode(key: bytes | None, headers: Headers | None, value: bytes | None) -> Event:
    """Parse and validate a Kafka record; raise DecodeError naming what is wrong.

    This is the hot path of every consumer, so it reads the binary-mode headers directly; tests
    check that the CloudEvents SDK reads the same records the same way.
    """
    hdrs = {k: v for k, v in headers or () if v is not None}
    if "ce_type" not in hdrs or "ce_specversion" not in hdrs:
        raise DecodeError("not a CloudEvent: missing ce_specversion/ce_type headers")
    for name, raw in headers or ():
        limit = HEADER_LIMITS.get(name)
        if limit is not None and raw is not None and len(raw) > limit:
            raise DecodeError(
                f"invalid CloudEvent: header {name} is {len(raw)} bytes, longer than {limit}"
            )
    try:
        attrs = {name: hdrs[name].decode() for name in REQUIRED}
    except KeyError as exc:
        raise DecodeError(f"invalid CloudEvent: missing header {exc.args[0]}") from exc
    except UnicodeDecodeError as exc:
        raise DecodeError(f"invalid CloudEvent: header is not UTF-8: {exc}") from exc
    if not attrs["ce_id"]:
        raise DecodeError("invalid CloudEvent: header ce_id is empty")
    if attrs["ce_specversion"] != "1.0":
        raise DecodeError(f"unsupported CloudEvents specversion {attrs['ce_specversion']!r}")
    content_type = hdrs.get("content-type", CONTENT_TYPE.encode()).split(b";")[0].strip()
    if content_type != CONTENT_TYPE.encode():
        raise DecodeError(f"unsupported content-type {content_type!r}")
    event_type = attrs["ce_type"]
    spec = spec_for_type(event_type)
    if spec is None:
        raise UnknownEventType(f"unknown event type {event_type!r}")
    try:
        time = datetime.fromisoformat(hdrs["ce_time"].decode()) if "ce_time" in hdrs else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"invalid CloudEvent: ce_time is not an RFC 3339 time: {exc}") from exc
    try:
        payload = spec.model.model_validate_json(value or b"")
    except ValidationError as exc:
        raise DecodeError(f"{event_type}: invalid payload: {exc}") from exc
    if key is not None and key != payload.app.encode():
        raise DecodeError(f"{event_type}: key {key!r} differs from payload app {payload.app!r}")
    return Event(
        type=event_type,
        source=attrs["ce_source"],
        data=payload,
        id=attrs["ce_id"],
        time=time or datetime.now(UTC),
        traceparent=header(headers, "traceparent"),
        tracestate=header(headers, "tracestate"),
    )


def verify_source(event: Event) -> Event:
    """The event, if its `ce_source` names a service that may publish its type; else DecodeError.

    The broker's ACLs let only a topic's producers write to it; this refuses the records one of
    them writes in another's name (e.g. a `change-requested` claiming to come from the pipeline).
    """
    spec = spec_for_type(event.type)
    if spec is not None and event.source not in spec.sources:
        raise DecodeError(
            f"{event.type}: ce_source {event.source[:200]!r} may not publish this type "
            f"(allowed: {', '.join(spec.sources)})"
        )
    return event
