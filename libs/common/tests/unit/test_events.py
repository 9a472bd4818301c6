"""The event envelope and contracts, without a broker."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary
from cloudevents.core.formats.json import JSONFormat

from ooda.events import CATALOG, DecodeError, Event, MetricObserved, decode, encode, spec_for_type
from ooda.events.contracts import topics
from ooda.events.envelope import UnknownEventType
from ooda.examples import example_payloads
from ooda.testing import REPO

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("payload", example_payloads(), ids=lambda p: type(p).__name__)
def test_every_example_survives_encode_and_decode(payload: object) -> None:
    event = Event.new(
        payload, source="/ooda/test", traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    )  # type: ignore[arg-type]
    key, headers, value = encode(event)
    back = decode(key, headers, value)
    assert back.data == payload and back.id == event.id and back.type == event.type
    assert back.traceparent == event.traceparent
    assert key == b"web"


def test_headers_are_cloudevents_binary_mode_as_the_sdk_reads_them() -> None:
    event = Event.new(example_payloads()[0], source="/ooda/monitor")
    key, headers, value = encode(event)
    ce = from_binary(KafkaMessage(headers=dict(headers), key=key, value=value), JSONFormat())
    assert ce.get_type() == "io.ooda.metric.observed.v1"
    assert ce.get_subject() == "web"
    assert ce.get_time() == event.time.replace(microsecond=event.time.microsecond)


def test_a_record_without_cloudevent_headers_is_refused_with_the_reason() -> None:
    with pytest.raises(DecodeError, match="not a CloudEvent"):
        decode(b"web", [], b"{}")


def test_an_invalid_payload_is_refused_naming_the_field() -> None:
    _, headers, _ = encode(Event.new(example_payloads()[0], source="/x"))
    with pytest.raises(DecodeError, match="instance_count"):
        decode(b"web", headers, b'{"app": "web", "window_start": "2026-01-01T00:00:00Z"}')


def test_a_key_that_differs_from_the_payload_app_is_refused() -> None:
    _, headers, value = encode(Event.new(example_payloads()[0], source="/x"))
    with pytest.raises(DecodeError, match="differs"):
        decode(b"other", headers, value)


def test_an_unknown_event_type_is_reported_as_unknown_not_broken() -> None:
    _, headers, value = encode(Event.new(example_payloads()[0], source="/x"))
    headers = [(k, b"io.other.v9" if k == "ce_type" else v) for k, v in headers]
    with pytest.raises(UnknownEventType):
        decode(b"web", headers, value)


def test_readers_ignore_fields_they_do_not_know() -> None:
    payload = example_payloads()[0]
    data = payload.model_dump(mode="json") | {"added_in_a_later_release": 1}
    assert MetricObserved.model_validate(data) == payload


def test_event_types_are_versioned_and_unique() -> None:
    types = [spec.type for spec in CATALOG]
    assert len(set(types)) == len(types)
    assert all(t.endswith(".v1") for t in types)
    assert spec_for_type("io.ooda.deploy.done.v1") is not None


def test_the_local_infrastructure_creates_every_topic_the_catalog_names() -> None:
    lines = (REPO / "deploy" / "local" / "topics.txt").read_text().splitlines()
    declared = {line.split()[0] for line in lines if line.strip() and not line.startswith("#")}
    assert declared == set(topics())


def test_time_is_carried_in_utc() -> None:
    event = Event.new(example_payloads()[0], source="/x", time=datetime(2026, 1, 1, tzinfo=UTC))
    _, headers, _ = encode(event)
    assert dict(headers)["ce_time"] == b"2026-01-01T00:00:00Z"


@pytest.mark.parametrize(
    "name", ["ce_id", "ce_source", "ce_subject", "ce_time", "traceparent", "tracestate"]
)
def test_an_over_long_header_is_refused_naming_it(name: str) -> None:
    event = Event.new(example_payloads()[0], source="/x", traceparent="00-" + "a" * 32 + "-01")
    key, headers, value = encode(event)
    headers = [(k, v) for k, v in headers if k != name] + [(name, b"x" * 10_000)]
    with pytest.raises(DecodeError, match=f"header {name} is 10000 bytes"):
        decode(key, headers, value)


def test_an_empty_event_id_is_refused() -> None:
    key, headers, value = encode(Event.new(example_payloads()[0], source="/x"))
    headers = [(k, b"" if k == "ce_id" else v) for k, v in headers]
    with pytest.raises(DecodeError, match="header ce_id is empty"):
        decode(key, headers, value)


def test_the_outbox_refuses_an_event_larger_than_a_record_may_be() -> None:
    from ooda.db import Messaging, new_metadata
    from ooda.events import ChangeProgressed
    from ooda.outbox import EventTooLarge, Outbox

    outbox = Outbox(Messaging(new_metadata()), source="/x")
    payload = ChangeProgressed(app="web", change_id="c1", state="running", message="m" * 2_000_000)
    with pytest.raises(EventTooLarge, match=r"io.ooda.change.progressed.v1 .* 2000\d+ bytes"):
        outbox.add(None, payload)  # type: ignore[arg-type]  # refused before the session is used


def test_a_change_set_too_large_for_one_record_is_split_into_numbered_parts() -> None:
    from ooda.events import CmdbChanged
    from ooda.events.contracts import ItemChange

    items = [ItemChange(type="host", id=f"h{n:05d}-" + "x" * 200, op="create") for n in range(9000)]
    whole = CmdbChanged(app="cmdb", change_set_id="cs1", actor="ops", items=items)
    parts = whole.split(1_000_000)
    assert len(parts) == 3
    assert all(len(p.model_dump_json()) <= 1_000_000 for p in parts)
    assert [(p.part, p.parts) for p in parts] == [(1, 3), (2, 3), (3, 3)]
    assert [i for p in parts for i in p.items] == items
    assert {p.change_set_id for p in parts} == {"cs1"}
    assert whole.split(10_000_000) == [whole]
