"""The platform's delivery promises, on a real Kafka broker and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary
from cloudevents.core.formats.json import JSONFormat
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from ooda.consumer import EventConsumer
from ooda.events import CATALOG, Event, MetricObserved, decode, encode
from ooda.examples import example_payloads
from ooda.metrics import CONSUMED, OUTBOX_PARKED
from ooda.outbox import MAX_RECORD_BYTES, Outbox, OutboxRelay
from ooda.telemetry import add_span_processor, setup_tracing, tracer
from ooda.testing import Infra, unique

from .conftest import Store, outbox_for, read_topic, relay_for, until

pytestmark = pytest.mark.integration


def metric(app: str) -> MetricObserved:
    return next(p for p in example_payloads(app) if isinstance(p, MetricObserved))


def consumer_for(store: Store, infra: Infra, prefix: str, handler: Any, **kw: Any) -> EventConsumer:
    return EventConsumer(
        service="test",
        group_id=unique("group"),
        topics=[prefix + "metric-observed"],
        handlers={"io.ooda.metric.observed.v1": handler},
        sessions=store.sessions,
        messaging=store.messaging,
        outbox=outbox_for(store, prefix),
        bootstrap=infra.kafka(),
        **kw,
    )


def recording_handler(store: Store) -> Any:
    async def handle(session: AsyncSession, event: Event) -> None:
        await session.execute(insert(store.effects).values(event_id=event.id, app=event.subject))

    return handle


async def count_effects(store: Store, app: str) -> int:
    async with store.sessions() as s:
        return int(await s.scalar(select(func.count()).where(store.effects.c.app == app)) or 0)


async def running(consumer: EventConsumer) -> asyncio.Task[None]:
    await consumer.start()
    return asyncio.create_task(consumer.run())


async def stop(task: asyncio.Task[None], consumer: EventConsumer) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await consumer.stop()


async def test_an_outbox_event_survives_a_crash_between_commit_and_publish(
    store: Store, infra: Infra, prefix: str
) -> None:
    app = unique("app")
    async with store.sessions() as s, s.begin():
        event = outbox_for(store, prefix).add(s, metric(app))
    # The process "crashes" here: committed, never published. A new relay picks it up.
    relay, producer = relay_for(store, infra)
    await producer.start()  # type: ignore[attr-defined]
    try:
        assert await relay.drain() == 1
    finally:
        await producer.stop()  # type: ignore[attr-defined]
    records = await read_topic(infra, prefix + "metric-observed", 1)
    got = decode(records[0].key, records[0].headers, records[0].value)  # type: ignore[attr-defined]
    assert got.id == event.id and got.subject == app
    async with store.sessions() as s:
        unsent = await s.scalar(
            select(func.count()).where(store.messaging.outbox.c.sent_at.is_(None))
        )
    assert unsent == 0


async def test_a_crash_after_publish_but_before_marking_sent_repeats_no_effect(
    store: Store, infra: Infra, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = unique("app")
    async with store.sessions() as s, s.begin():
        outbox_for(store, prefix).add(s, metric(app))
    relay, producer = relay_for(store, infra)
    await producer.start()  # type: ignore[attr-defined]
    original_update = OutboxRelay.publish_batch

    async def crash_after_send(self: OutboxRelay) -> int:
        # Publish for real, then die before the UPDATE ... sent_at commits.
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(self.table))).all()
        for r in rows:
            await (
                await self.producer.send(
                    r.topic,
                    value=r.value,
                    key=r.key,
                    headers=[(k, __import__("base64").b64decode(v)) for k, v in r.headers],
                )
            )
        raise ConnectionError("relay killed")

    monkeypatch.setattr(OutboxRelay, "publish_batch", crash_after_send)
    with pytest.raises(ConnectionError):
        await relay.publish_batch()
    monkeypatch.setattr(OutboxRelay, "publish_batch", original_update)
    assert await relay.drain() == 1  # published a second time
    await producer.stop()  # type: ignore[attr-defined]

    consumer = consumer_for(store, infra, prefix, recording_handler(store))
    task = await running(consumer)
    try:
        await until(lambda: _inbox_count(store, consumer.group_id, 1))
        await asyncio.sleep(1.0)  # let the duplicate arrive too
        assert await count_effects(store, app) == 1
    finally:
        await stop(task, consumer)
    assert len(await read_topic(infra, prefix + "metric-observed", 2)) == 2


async def _inbox_count(store: Store, group: str, n: int) -> bool:
    async with store.sessions() as s:
        got = await s.scalar(select(func.count()).where(store.messaging.inbox.c.consumer == group))
    return (got or 0) >= n


async def produce(infra: Infra, topic: str, records: list[tuple[bytes | None, Any, bytes]]) -> None:
    producer = AIOKafkaProducer(**infra.kafka().options())
    await producer.start()
    try:
        for key, headers, value in records:
            await producer.send_and_wait(topic, value=value, key=key, headers=headers, partition=0)
    finally:
        await producer.stop()


async def test_a_duplicate_delivery_changes_nothing(
    store: Store, infra: Infra, prefix: str
) -> None:
    app = unique("app")
    event = Event.new(metric(app), source="/ooda/monitor")
    record = encode(event)
    await produce(infra, prefix + "metric-observed", [record, record, record])
    consumer = consumer_for(store, infra, prefix, recording_handler(store))
    task = await running(consumer)
    try:
        await until(lambda: _committed(consumer, prefix + "metric-observed", 3))
    finally:
        await stop(task, consumer)
    assert await count_effects(store, app) == 1
    async with store.sessions() as s:
        inbox = (await s.execute(select(store.messaging.inbox))).all()
    assert [(r.event_id, r.outcome) for r in inbox] == [(event.id, "handled")]


async def _has_effects(store: Store, app: str, n: int) -> bool:
    return await count_effects(store, app) >= n


async def _committed(consumer: EventConsumer, topic: str, offset: int) -> bool:
    from aiokafka import TopicPartition

    assert consumer.consumer is not None
    committed = await consumer.consumer.committed(TopicPartition(topic, 0))
    return committed is not None and committed >= offset


async def test_a_garbage_message_is_dead_lettered_and_later_messages_are_processed(
    store: Store, infra: Infra, prefix: str
) -> None:
    app = unique("app")
    good = [encode(Event.new(metric(app), source="/ooda/monitor")) for _ in range(3)]
    garbage: list[tuple[bytes | None, Any, bytes]] = [
        (b"x", None, b"\x00not json"),
        (
            app.encode(),
            [
                ("ce_specversion", b"1.0"),
                ("ce_type", b"io.ooda.metric.observed.v1"),
                ("ce_id", b"1"),
                ("ce_source", b"/x"),
                ("content-type", b"application/json"),
            ],
            b'{"app": 5}',
        ),
    ]
    await produce(infra, prefix + "metric-observed", garbage + good)
    consumer = consumer_for(store, infra, prefix, recording_handler(store))
    task = await running(consumer)
    try:
        await until(lambda: _committed(consumer, prefix + "metric-observed", 5))
    finally:
        await stop(task, consumer)
    assert await count_effects(store, app) == 3
    relay, producer = relay_for(store, infra)
    await producer.start()  # type: ignore[attr-defined]
    try:
        assert await relay.drain() == 2
    finally:
        await producer.stop()  # type: ignore[attr-defined]
    dead = await read_topic(infra, prefix + "metric-observed.dlq", 2)
    # Different keys land on different partitions: match each dead letter by its key.
    by_key = {r.key: r for r in dead}  # type: ignore[attr-defined]
    garbage_error = dict(by_key[b"x"].headers)["ooda_dlq_error"].decode()
    invalid_error = dict(by_key[app.encode()].headers)["ooda_dlq_error"].decode()
    assert "not a CloudEvent" in garbage_error
    assert "invalid payload" in invalid_error and "app" in invalid_error
    assert by_key[b"x"].value == b"\x00not json"


async def test_an_event_whose_handler_keeps_failing_is_dead_lettered_after_retries(
    store: Store, infra: Infra, prefix: str
) -> None:
    app, poison = unique("app"), unique("poison")
    attempts: list[str] = []
    record = recording_handler(store)

    async def handler(session: AsyncSession, event: Event) -> None:
        if event.subject == poison:
            attempts.append(event.id)
            raise RuntimeError("cannot apply this one")
        await record(session, event)

    records = [
        encode(Event.new(metric(app), source="/ooda/monitor")),
        encode(Event.new(metric(poison), source="/ooda/monitor")),
        encode(Event.new(metric(app), source="/ooda/monitor")),
    ]
    await produce(infra, prefix + "metric-observed", records)
    consumer = consumer_for(store, infra, prefix, handler, max_attempts=3, backoff_seconds=0.01)
    task = await running(consumer)
    try:
        await until(lambda: _committed(consumer, prefix + "metric-observed", 3))
    finally:
        await stop(task, consumer)
    assert await count_effects(store, app) == 2
    assert len(attempts) == 1 + 3  # the failed batch attempt, then 3 single attempts
    async with store.sessions() as s:
        row = (await s.execute(select(store.messaging.outbox))).one()
    headers = dict((k, v) for k, v in row.headers)
    assert row.topic == prefix + "metric-observed.dlq"
    assert __import__("base64").b64decode(headers["ooda_dlq_attempts"]) == b"3"


@pytest.mark.parametrize("spec", CATALOG, ids=lambda s: s.topic)
async def test_every_event_type_round_trips_through_kafka_and_parses_with_the_sdk(
    spec: Any, store: Store, infra: Infra, prefix: str
) -> None:
    app = unique("app")
    payload = next(p for p in example_payloads(app) if type(p) is spec.model)
    async with store.sessions() as s, s.begin():
        sent = outbox_for(store, prefix).add(s, payload)
    relay, producer = relay_for(store, infra)
    await producer.start()  # type: ignore[attr-defined]
    try:
        await relay.drain()
    finally:
        await producer.stop()  # type: ignore[attr-defined]
    (rec,) = await read_topic(infra, prefix + spec.topic, 1)
    ce = from_binary(
        KafkaMessage(headers=dict(rec.headers), key=rec.key, value=rec.value),  # type: ignore[attr-defined]
        JSONFormat(),
    )
    assert ce.get_specversion() == "1.0"
    assert ce.get_type() == spec.type and ce.get_id() == sent.id
    assert ce.get_source() == "/ooda/monitor" and ce.get_subject() == app
    assert ce.get_datacontenttype() == "application/json"
    assert rec.key == app.encode()  # type: ignore[attr-defined]
    assert spec.model.model_validate(ce.get_data()) == payload
    assert dict(rec.headers)["traceparent"].startswith(b"00-")  # type: ignore[attr-defined]


async def test_one_trace_spans_the_produce_consume_hop(
    store: Store, infra: Infra, prefix: str
) -> None:
    setup_tracing("test")
    exporter = InMemorySpanExporter()
    add_span_processor(SimpleSpanProcessor(exporter))
    app = unique("app")
    with tracer.start_as_current_span("user request") as root:
        async with store.sessions() as s, s.begin():
            outbox_for(store, prefix).add(s, metric(app))
    relay, producer = relay_for(store, infra)
    await producer.start()  # type: ignore[attr-defined]
    await relay.drain()
    await producer.stop()  # type: ignore[attr-defined]
    consumer = consumer_for(store, infra, prefix, recording_handler(store))
    task = await running(consumer)
    try:
        await until(lambda: _has_effects(store, app, 1))
    finally:
        await stop(task, consumer)
    trace_id = root.get_span_context().trace_id
    spans = [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]
    publish = next(s for s in spans if s.kind == SpanKind.PRODUCER)
    process = next(s for s in spans if s.kind == SpanKind.CONSUMER)
    assert publish.parent is not None and publish.parent.span_id == root.get_span_context().span_id
    assert process.parent is not None and process.parent.span_id == publish.context.span_id
    assert process.attributes is not None and process.attributes["ooda.app"] == app
    assert uuid.UUID(str(process.attributes["messaging.message.id"]))


async def test_a_record_with_an_over_long_event_id_is_dead_lettered_and_the_next_is_processed(
    store: Store, infra: Infra, prefix: str
) -> None:
    app = unique("app")
    key, headers, value = encode(Event.new(metric(app), source="/ooda/monitor"))
    long_id = [(k, b"i" * 10_240 if k == "ce_id" else v) for k, v in headers]
    good = encode(Event.new(metric(app), source="/ooda/monitor"))
    await produce(infra, prefix + "metric-observed", [(key, long_id, value), good])
    consumer = consumer_for(
        store, infra, prefix, recording_handler(store), max_attempts=2, backoff_seconds=0.01
    )
    task = await running(consumer)
    try:
        await until(lambda: _committed(consumer, prefix + "metric-observed", 2))
    finally:
        await stop(task, consumer)
    assert await count_effects(store, app) == 1
    assert await _drain(store, infra) == 1
    (dead,) = await read_topic(infra, prefix + "metric-observed.dlq", 1)
    assert "ce_id is 10240 bytes" in dict(dead.headers)["ooda_dlq_error"].decode()  # type: ignore[attr-defined]
    assert dead.value == value  # type: ignore[attr-defined]


async def test_a_dead_letter_that_cannot_be_written_is_skipped_and_counted_never_retried_forever(
    store: Store, infra: Infra, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = unique("app")
    garbage: tuple[bytes | None, Any, bytes] = (app.encode(), None, b"\x00not json")
    good = encode(Event.new(metric(app), source="/ooda/monitor"))
    await produce(infra, prefix + "metric-observed", [garbage, good])

    def refuse(*args: Any, **kw: Any) -> None:
        raise ValueError("this dead letter cannot be stored")

    monkeypatch.setattr(Outbox, "add_record", refuse)
    consumer = consumer_for(
        store, infra, prefix, recording_handler(store), max_attempts=2, backoff_seconds=0.01
    )
    skipped = CONSUMED.labels("test", prefix + "metric-observed", "skipped")
    before = skipped._value.get()
    task = await running(consumer)
    try:
        await until(lambda: _committed(consumer, prefix + "metric-observed", 2))
    finally:
        await stop(task, consumer)
    assert await count_effects(store, app) == 1
    assert skipped._value.get() == before + 1
    async with store.sessions() as s:
        outcomes = (await s.execute(select(store.messaging.inbox.c.outcome))).scalars().all()
    assert sorted(outcomes) == ["handled", "skipped"]


async def _drain(store: Store, infra: Infra) -> int:
    relay, producer = relay_for(store, infra)
    await producer.start()  # type: ignore[attr-defined]
    try:
        return await relay.drain()
    finally:
        await producer.stop()  # type: ignore[attr-defined]


async def test_a_dead_letter_copy_of_a_record_near_the_size_limit_is_truncated_and_relayed(
    store: Store, infra: Infra, prefix: str
) -> None:
    app = unique("app")
    huge = (
        b"\x00" + b"z" * 1_048_300
    )  # as large as the broker takes; with dead-letter headers, more
    good = encode(Event.new(metric(app), source="/ooda/monitor"))
    await produce(infra, prefix + "metric-observed", [(app.encode(), None, huge), good])
    consumer = consumer_for(store, infra, prefix, recording_handler(store))
    task = await running(consumer)
    try:
        await until(lambda: _committed(consumer, prefix + "metric-observed", 2))
    finally:
        await stop(task, consumer)
    async with store.sessions() as s, s.begin():
        outbox_for(store, prefix).add(s, metric(app))  # an event behind the dead letter
    assert await _drain(store, infra) == 2
    (dead,) = await read_topic(infra, prefix + "metric-observed.dlq", 1)
    headers = dict(dead.headers)  # type: ignore[attr-defined]
    assert len(dead.value) <= MAX_RECORD_BYTES  # type: ignore[attr-defined]
    assert dead.value == huge[: len(dead.value)]  # type: ignore[attr-defined]
    assert headers["ooda_dlq_truncated"].startswith(b"value 1048301 -> ")
    assert "not a CloudEvent" in headers["ooda_dlq_error"].decode()
    assert len(await read_topic(infra, prefix + "metric-observed", 3)) == 3


async def test_a_record_the_broker_refuses_is_parked_and_the_relay_goes_on(
    store: Store, infra: Infra, prefix: str
) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    small = prefix + "small-records"
    admin = AIOKafkaAdminClient(**infra.kafka().options())
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(small, 1, 1, topic_configs={"max.message.bytes": "10000"})]
        )
    finally:
        await admin.close()
    app = unique("app")
    outbox = outbox_for(store, prefix)
    async with store.sessions() as s, s.begin():
        outbox.add(s, metric(app))
        outbox.add_record(s, small, app.encode(), [], b"y" * 50_000, event_id="too-big")
        outbox.add(s, metric(app))
    parked = OUTBOX_PARKED.labels("test", small)
    before = parked._value.get()
    assert await _drain(store, infra) == 3  # two published, one parked
    assert len(await read_topic(infra, prefix + "metric-observed", 2)) == 2
    t = store.messaging.outbox
    async with store.sessions() as s:
        row = (await s.execute(select(t).where(t.c.event_id == "too-big"))).one()
    assert row.sent_at is None and row.parked_at is not None
    assert "MessageSizeTooLarge" in row.parked_reason
    assert parked._value.get() == before + 1
    async with store.sessions() as s, s.begin():
        outbox.add(s, metric(app))
    assert await _drain(store, infra) == 1  # the parked row is never tried again


async def test_a_dead_letter_refused_whole_is_written_again_cut_short(
    store: Store, infra: Infra, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = unique("app")
    garbage: tuple[bytes | None, Any, bytes] = (app.encode(), [("note", b"n" * 5000)], b"\x00x")
    await produce(infra, prefix + "metric-observed", [garbage])
    add_record = Outbox.add_record

    def refuse_long_headers(self: Outbox, *args: Any, **kw: Any) -> None:
        if any(len(v) > 1024 for _, v in args[3]):  # e.g. a store that limits header values
            raise ValueError("header value too long")
        add_record(self, *args, **kw)

    monkeypatch.setattr(Outbox, "add_record", refuse_long_headers)
    consumer = consumer_for(
        store, infra, prefix, recording_handler(store), max_attempts=2, backoff_seconds=0.01
    )
    task = await running(consumer)
    try:
        await until(lambda: _committed(consumer, prefix + "metric-observed", 1))
    finally:
        await stop(task, consumer)
    assert await _drain(store, infra) == 1
    (dead,) = await read_topic(infra, prefix + "metric-observed.dlq", 1)
    headers = dict(dead.headers)  # type: ignore[attr-defined]
    assert headers["note"] == b"n" * 1024 and dead.value == b"\x00x"  # type: ignore[attr-defined]
    assert headers["ooda_dlq_truncated"].startswith(b"value 2 -> 2 bytes")


async def test_an_event_whose_source_may_not_publish_its_type_is_dead_lettered_with_the_reason(
    store: Store, infra: Infra, prefix: str
) -> None:
    app = unique("app")
    # A producer allowed on the topic by the broker (or a stolen credential) writing in the name
    # of another service: metric-observed comes from the monitor only.
    forged = encode(Event.new(metric(app), source="/ooda/pipeline"))
    genuine = encode(Event.new(metric(app), source="/ooda/monitor"))
    await produce(infra, prefix + "metric-observed", [forged, genuine])
    consumer = consumer_for(store, infra, prefix, recording_handler(store))
    task = await running(consumer)
    try:
        await until(lambda: _committed(consumer, prefix + "metric-observed", 2))
    finally:
        await stop(task, consumer)
    assert await count_effects(store, app) == 1
    assert await _drain(store, infra) == 1
    (dead,) = await read_topic(infra, prefix + "metric-observed.dlq", 1)
    error = dict(dead.headers)["ooda_dlq_error"].decode()  # type: ignore[attr-defined]
    assert "'/ooda/pipeline' may not publish" in error and "/ooda/monitor" in error
