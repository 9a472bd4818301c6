"""A private schema, topics and helpers for the `ooda` library's integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import Column, Integer, MetaData, String, Table, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from ooda.db import Messaging, new_metadata, session_factory
from ooda.migrations import create_messaging_v1, in_context
from ooda.outbox import Outbox, OutboxRelay, new_producer
from ooda.testing import Infra, create_topics, delete_topics, unique


@dataclass
class Store:
    """A throwaway schema with the messaging tables and an `effects` table."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    messaging: Messaging
    effects: Table
    schema: str


def effects_table(metadata: MetaData) -> Table:
    """Rows the test handlers write, one per applied event."""
    return Table(
        "effects",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("event_id", String(100), nullable=False),
        Column("app", String(100), nullable=False),
    )


@pytest.fixture
async def store(infra: Infra) -> AsyncIterator[Store]:
    schema = unique("t").replace("-", "_")
    url = infra.database_url("ooda_test")
    admin = create_async_engine(url)
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    await admin.dispose()
    engine = create_async_engine(url, connect_args={"server_settings": {"search_path": schema}})
    metadata = new_metadata()
    messaging = Messaging(metadata)
    effects = effects_table(metadata)
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: create_messaging_v1(in_context(c)))
        await conn.run_sync(lambda c: effects.create(c))
    yield Store(engine, session_factory(engine), messaging, effects, schema)
    await engine.dispose()


@pytest.fixture
async def prefix(infra: Infra) -> AsyncIterator[str]:
    """A unique topic prefix, with every catalog topic and its dead-letter topic created."""
    value = unique("test").replace("-", "") + "."
    await create_topics(infra, value)
    yield value
    await delete_topics(infra, value)


def relay_for(store: Store, infra: Infra, name: str = "test") -> tuple[OutboxRelay, object]:
    producer = new_producer(infra.kafka(), client_id=unique("relay"))
    return OutboxRelay(store.engine, store.messaging, producer, name, poll_seconds=0.2), producer


async def read_topic(infra: Infra, topic: str, count: int, timeout: float = 20.0) -> list[object]:
    """Read `count` records from the beginning of a topic (fail after `timeout`)."""
    consumer = AIOKafkaConsumer(
        topic,
        **infra.kafka().options(),
        auto_offset_reset="earliest",
        group_id=unique("reader"),
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[object] = []
    try:
        async with asyncio.timeout(timeout):
            while len(records) < count:
                batch = await consumer.getmany(timeout_ms=500)
                for recs in batch.values():
                    records.extend(recs)
    finally:
        await consumer.stop()
    return records


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    """Poll `check` until it is true; fail the test after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.1)


def outbox_for(store: Store, prefix: str) -> Outbox:
    return Outbox(store.messaging, source="/ooda/monitor", topic_prefix=prefix)


@pytest.fixture(autouse=True, scope="session")
def tracing() -> None:
    """Services always install a tracer provider; so do these tests."""
    from ooda.telemetry import setup_tracing

    setup_tracing("test")
