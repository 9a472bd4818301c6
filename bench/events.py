"""Throughput of the reliable event paths beside raw aiokafka, on the same broker, in one run.

1. consume: EventConsumer (decode, validate, handler writes a row, inbox row, one DB commit per
   fetched batch, offsets committed after it) vs a bare AIOKafkaConsumer reading the same records.
2. relay: OutboxRelay (read unsent rows, publish with the idempotent producer, mark sent) vs a bare
   idempotent AIOKafkaProducer sending the same records.

Usage: python bench/events.py [--events 30000] [--repeat 3]   (each run, then the median)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

from aiokafka import AIOKafkaConsumer
from sqlalchemy import Column, Integer, String, Table, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from ooda.bus import KafkaConnection
from ooda.consumer import EventConsumer, batched
from ooda.db import Messaging, new_metadata, session_factory
from ooda.events import Event, MetricObserved, encode
from ooda.examples import example_payloads
from ooda.migrations import create_messaging_v1, in_context
from ooda.outbox import Outbox, OutboxRelay, new_producer
from ooda.telemetry import setup_tracing
from ooda.testing import Infra, create_topics, resolve_infra


async def produce_raw(
    kafka: KafkaConnection, topic: str, records: list[tuple[bytes, list, bytes]]
) -> float:
    producer = new_producer(kafka, client_id="bench-raw")
    await producer.start()
    started = time.perf_counter()
    futures = [await producer.send(topic, value=v, key=k, headers=h) for k, h, v in records]
    await asyncio.gather(*futures)
    elapsed = time.perf_counter() - started
    await producer.stop()
    return elapsed


async def consume_raw(kafka: KafkaConnection, topic: str, n: int) -> float:
    consumer = AIOKafkaConsumer(
        topic,
        **kafka.options(),
        group_id=f"bench-raw-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=500,
    )
    await consumer.start()
    got, started = 0, time.perf_counter()
    while got < n:
        batch = await consumer.getmany(timeout_ms=500, max_records=500)
        got += sum(len(r) for r in batch.values())
        if batch:
            await consumer.commit()
    elapsed = time.perf_counter() - started
    await consumer.stop()
    return elapsed


async def main(n: int, repeat: int) -> None:
    setup_tracing("bench")
    infra = resolve_infra()
    results = [await one_run(infra, n) for _ in range(repeat)]
    print(f"events per run: {n}, runs: {repeat} (6 partitions, 60 keys, one broker, PostgreSQL)")
    print(f"{'path':8} {'baseline':26} {'ev/s':>8}   {'reliable path':46} {'ev/s':>8} {'ratio':>6}")
    for i, (path, base, ours) in enumerate(
        [
            ("consume", "raw aiokafka consumer", "EventConsumer (batch db write+inbox+commit)"),
            ("produce", "raw idempotent producer", "OutboxRelay (read + publish + mark sent)"),
        ]
    ):
        for run in results:
            base_rate, our_rate = run[i]
            print(
                f"{path:8} {base:26} {base_rate:8.0f}   {ours:46} {our_rate:8.0f} "
                f"{our_rate / base_rate:6.2f}"
            )
        base_med = statistics.median(r[i][0] for r in results)
        our_med = statistics.median(r[i][1] for r in results)
        print(
            f"{path:8} {'median':26} {base_med:8.0f}   {'median':46} {our_med:8.0f} "
            f"{our_med / base_med:6.2f}"
        )


async def one_run(infra: Infra, n: int) -> list[tuple[float, float]]:
    """One measurement of both paths on fresh topics and a fresh schema: (baseline, ours) ev/s."""
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    await create_topics(infra, prefix, partitions=6)
    schema = "bench_" + uuid.uuid4().hex[:8]
    url = infra.database_url("ooda_test")
    admin = create_async_engine(url)
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    await admin.dispose()
    engine = create_async_engine(url, connect_args={"server_settings": {"search_path": schema}})
    metadata = new_metadata()
    messaging = Messaging(metadata)
    effects = Table(
        "effects",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("event_id", String(64)),
        Column("app", String(64)),
    )
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: create_messaging_v1(in_context(c)))
        await conn.run_sync(effects.create)
    sessions = session_factory(engine)
    outbox = Outbox(messaging, source="/ooda/monitor", topic_prefix=prefix)
    template = next(p for p in example_payloads() if isinstance(p, MetricObserved))
    apps = [f"app-{i}" for i in range(60)]
    events = [
        Event.new(template.model_copy(update={"app": apps[i % 60]}), source="/ooda/monitor")
        for i in range(n)
    ]
    records = [encode(e) for e in events]

    # --- produce: raw producer vs outbox relay -----------------------------------------------
    raw_produce = await produce_raw(infra.kafka(), prefix + "metric-observed", records)
    for start in range(0, n, 5000):
        async with sessions() as s, s.begin():
            for k, h, v in records[start : start + 5000]:
                outbox.add_record(s, prefix + "scale-decided", k, h, v)
    producer = new_producer(infra.kafka(), client_id="bench-relay")
    await producer.start()
    relay = OutboxRelay(engine, messaging, producer, "bench", batch_size=2000)
    started = time.perf_counter()
    published = await relay.drain()
    relay_s = time.perf_counter() - started
    await producer.stop()
    assert published == n, published

    # --- consume: raw consumer vs reliable consumer ------------------------------------------
    raw_consume = await consume_raw(infra.kafka(), prefix + "metric-observed", n)

    async def handle(session: AsyncSession, batch: list[Event]) -> None:
        await session.execute(
            insert(effects), [{"event_id": e.id, "app": e.subject} for e in batch]
        )

    consumer = EventConsumer(
        service="bench",
        group_id=f"bench-{uuid.uuid4().hex[:6]}",
        topics=[prefix + "metric-observed"],
        handlers={template_type(): batched(handle)},
        sessions=sessions,
        messaging=messaging,
        outbox=outbox,
        bootstrap=infra.kafka(),
        max_records=2000,
    )
    await consumer.start()
    assert consumer.consumer is not None
    started = time.perf_counter()
    done = 0
    while done < n:
        batch = await consumer.consumer.getmany(timeout_ms=500, max_records=2000)
        if batch:
            await consumer.process(batch)
            done += sum(len(r) for r in batch.values())
    reliable_s = time.perf_counter() - started
    await consumer.stop()
    async with sessions() as s:
        applied = await s.scalar(select(func.count()).select_from(effects))
    assert applied == n, applied
    await engine.dispose()

    return [(n / raw_consume, n / reliable_s), (n / raw_produce, n / relay_s)]


def template_type() -> str:
    return "io.ooda.metric.observed.v1"


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.repeat))
