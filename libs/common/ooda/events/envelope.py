"""CloudEvents 1.0 in Kafka binary mode: `ce_*` headers, JSON value, application id as the key."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cloudevents.core.bindings.kafka import KafkaMessage, from_binary
from cloudevents.core.formats.json import JSONFormat
from pydantic import ValidationError

from ooda.events.contracts import Payload, spec_for_payload, spec_for_type

Headers = list[tuple[str, bytes]]
_JSON = JSONFormat()
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


def decode(key: bytes | None, headers: Headers | None, value: bytes | None) -> Event:
    """Parse and validate a Kafka record; raise DecodeError naming what is wrong."""
    hdrs = dict((k, v) for k, v in headers or () if v is not None)
    if "ce_type" not in hdrs or "ce_specversion" not in hdrs:
        raise DecodeError("not a CloudEvent: missing ce_specversion/ce_type headers")
    try:
        ce = from_binary(KafkaMessage(headers=hdrs, key=key, value=value or b""), _JSON)
    except Exception as exc:  # the SDK raises several types for bad attributes and bad JSON
        raise DecodeError(f"invalid CloudEvent: {exc}") from exc
    event_type = ce.get_type()
    spec = spec_for_type(event_type)
    if spec is None:
        raise UnknownEventType(f"unknown event type {event_type!r}")
    data = ce.get_data()
    if not isinstance(data, dict):
        raise DecodeError(f"{event_type}: payload is not a JSON object")
    try:
        payload = spec.model.model_validate(data)
    except ValidationError as exc:
        raise DecodeError(f"{event_type}: invalid payload: {exc}") from exc
    if key is not None and key.decode("utf-8", "replace") != payload.app:
        raise DecodeError(f"{event_type}: key {key!r} differs from payload app {payload.app!r}")
    time = ce.get_time()
    return Event(
        type=event_type,
        source=ce.get_source(),
        data=payload,
        id=ce.get_id(),
        time=time if isinstance(time, datetime) else datetime.now(UTC),
        traceparent=header(headers, "traceparent"),
        tracestate=header(headers, "tracestate"),
    )
