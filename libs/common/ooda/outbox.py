"""Transactional outbox: events are rows written with the change; a relay publishes them in order.

The relay holds a transaction-scoped advisory lock while it publishes a batch, so only one relay
per database publishes at a time and each application's events leave in commit order. A crash
after publishing and before marking rows sent republishes them: delivery is at-least-once and
every consumer deduplicates by event id.

A record is at most `MAX_RECORD_BYTES` (refused at `add`, so the caller's transaction fails with
the reason), and a row the broker still refuses (e.g. a topic with a lower `max.message.bytes`) is
parked: marked with the reason, counted, and skipped, so the rows behind it go on.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from opentelemetry.trace import SpanKind
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from ooda.bus import KafkaConnection, kafka_options
from ooda.db import OUTBOX_CHANNEL, Messaging, asyncpg_dsn
from ooda.events import Event, Payload, encode
from ooda.events.envelope import Headers
from ooda.metrics import OUTBOX_BACKLOG, OUTBOX_DELAY, OUTBOX_PARKED, OUTBOX_PUBLISHED
from ooda.telemetry import current_trace_headers, tracer

log = logging.getLogger(__name__)

RELAY_LOCK_ID = 0x00DA0001

# The largest record (as the producer sizes it) the outbox accepts: below the producer's default
# max_request_size (1 MiB) and the broker's default message.max.bytes (1 MiB + 12 bytes).
MAX_RECORD_BYTES = 1_000_000
# What a payload may take of a record: the rest is for the key and the bounded CloudEvent headers.
MAX_PAYLOAD_BYTES = MAX_RECORD_BYTES - 16 * 1024
# Errors that are about the record itself: retrying cannot help, so its row is parked.
UNSENDABLE = (MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError)


class EventTooLarge(ValueError):
    """An event or record is larger than a Kafka record may be (`MAX_RECORD_BYTES`)."""


def record_size(key: bytes | None, headers: Headers, value: bytes) -> int:
    """The size of a record as the producer counts it against its max_request_size."""
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers))


def pack_headers(headers: Headers) -> list[list[str]]:
    """Kafka headers as JSON (values base64, so any bytes survive)."""
    return [[k, base64.b64encode(v or b"").decode()] for k, v in headers]


def unpack_headers(stored: list[list[str]]) -> Headers:
    """Kafka headers back from their JSON form."""
    return [(k, base64.b64decode(v)) for k, v in stored]


class Outbox:
    """Writes events into the outbox inside the caller's transaction."""

    def __init__(self, messaging: Messaging, source: str, topic_prefix: str = "") -> None:
        self.source = source
        self.topic_prefix = topic_prefix  # lets tests and staging share one broker safely
        self.row_class = messaging.outbox_row

    def add(self, session: AsyncSession, payload: Payload, *, event_id: str | None = None) -> Event:
        """Record an event to publish when (and only if) the session's transaction commits."""
        event = Event.new(payload, source=self.source, **({"id": event_id} if event_id else {}))
        with tracer.start_as_current_span(
            f"{event.topic} publish",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": event.topic,
                "messaging.message.id": event.id,
                "ooda.app": event.subject,
            },
        ):
            trace_headers = current_trace_headers()
        event = replace(
            event,
            traceparent=trace_headers.get("traceparent"),
            tracestate=trace_headers.get("tracestate"),
        )
        key, headers, value = encode(event)
        topic = self.topic_prefix + event.topic
        if (size := record_size(key, headers, value)) > MAX_RECORD_BYTES:
            raise EventTooLarge(
                f"{event.type} for {event.subject!r} is {size} bytes, "
                f"more than a record may be ({MAX_RECORD_BYTES} bytes)"
            )
        self.add_record(session, topic, key, headers, value, event_id=event.id)
        return event

    def add_record(
        self,
        session: AsyncSession,
        topic: str,
        key: bytes | None,
        headers: Headers,
        value: bytes,
        *,
        event_id: str | None = None,
    ) -> None:
        """Record a raw Kafka record (used for dead letters, which keep the original bytes)."""
        if (size := record_size(key, headers, value)) > MAX_RECORD_BYTES:
            raise EventTooLarge(
                f"a record for {topic} is {size} bytes, "
                f"more than a record may be ({MAX_RECORD_BYTES} bytes)"
            )
        row = self.row_class()
        row.topic, row.key, row.headers, row.value, row.event_id = (
            topic,
            key,
            pack_headers(headers),
            value,
            event_id,
        )
        session.add(row)


def new_producer(bootstrap: str | KafkaConnection, client_id: str) -> AIOKafkaProducer:
    """An idempotent producer that waits for all in-sync replicas and batches briefly."""
    return AIOKafkaProducer(
        **kafka_options(bootstrap),
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_batch_size=512 * 1024,
        request_timeout_ms=15000,
    )


class OutboxRelay:
    """Publishes unsent outbox rows to Kafka in id order and marks them sent."""

    def __init__(
        self,
        engine: AsyncEngine,
        messaging: Messaging,
        producer: AIOKafkaProducer,
        service: str,
        *,
        batch_size: int = 1000,
        poll_seconds: float = 1.0,
        keep_sent: timedelta = timedelta(hours=24),
    ) -> None:
        self.engine = engine
        self.table = messaging.outbox
        self.producer = producer
        self.service = service
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.keep_sent = keep_sent
        self._wake = asyncio.Event()
        self._last_cleanup = datetime.min.replace(tzinfo=UTC)

    async def publish_batch(self) -> int:
        """Publish one batch of unsent rows; how many left the queue (published or parked)."""
        t = self.table
        async with self.engine.begin() as conn:
            locked = await conn.scalar(select(func.pg_try_advisory_xact_lock(RELAY_LOCK_ID)))
            if not locked:
                return 0
            rows = (
                await conn.execute(
                    select(t.c.id, t.c.topic, t.c.key, t.c.headers, t.c.value, t.c.created_at)
                    .where(t.c.sent_at.is_(None), t.c.parked_at.is_(None))
                    .order_by(t.c.id)
                    .limit(self.batch_size)
                )
            ).all()
            if not rows:
                OUTBOX_BACKLOG.labels(self.service).set(0)
                return 0
            parked = await self._send(rows)
            now = datetime.now(UTC)
            sent = [r for r in rows if r.id not in parked]
            if sent:
                await conn.execute(
                    update(t).where(t.c.id.in_([r.id for r in sent])).values(sent_at=func.now())
                )
            for r in rows:
                if r.id in parked:
                    log.error("outbox row %d for %s parked: %s", r.id, r.topic, parked[r.id])
                    await conn.execute(
                        update(t)
                        .where(t.c.id == r.id)
                        .values(parked_at=func.now(), parked_reason=parked[r.id])
                    )
            backlog = (
                0
                if len(rows) < self.batch_size
                else await conn.scalar(
                    select(func.count())
                    .select_from(t)
                    .where(t.c.sent_at.is_(None), t.c.parked_at.is_(None))
                )
            )
        OUTBOX_BACKLOG.labels(self.service).set(backlog or 0)
        for r in rows:
            if r.id in parked:
                OUTBOX_PARKED.labels(self.service, r.topic).inc()
                continue
            OUTBOX_PUBLISHED.labels(self.service, r.topic).inc()
            OUTBOX_DELAY.labels(self.service).observe(
                max(0.0, (now - r.created_at).total_seconds())
            )
        return len(rows)

    async def _send(self, rows: Sequence[Any]) -> dict[int, str]:
        """Send rows in order and wait for the broker; the ids of the rows refused for what they
        are, with why. Any other failure raises (nothing is marked; all is sent again later)."""
        parked: dict[int, str] = {}
        pending = []
        for r in rows:
            try:
                sending = await self.producer.send(
                    r.topic, value=r.value, key=r.key, headers=unpack_headers(r.headers)
                )
            except UNSENDABLE as exc:
                parked[r.id] = f"{type(exc).__name__}: {exc}"
                continue
            pending.append((r.id, sending))
        results = await asyncio.gather(*(f for _, f in pending), return_exceptions=True)
        for (row_id, _), result in zip(pending, results, strict=True):
            if isinstance(result, UNSENDABLE):
                parked[row_id] = f"{type(result).__name__}: {result}"
            elif isinstance(result, BaseException):
                raise result
        return parked

    async def drain(self) -> int:
        """Publish until the outbox is empty (or another relay holds the lock)."""
        total = 0
        while n := await self.publish_batch():
            total += n
        return total

    async def _cleanup(self) -> None:
        now = datetime.now(UTC)
        if now - self._last_cleanup < timedelta(minutes=5):
            return
        self._last_cleanup = now
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(self.table).where(self.table.c.sent_at < now - self.keep_sent)
            )

    async def run(self) -> None:
        """Relay forever: woken by NOTIFY on commit, and polling as a fallback."""
        listener = await self._listen()
        try:
            while True:
                try:
                    n = await self.publish_batch()
                    if n < self.batch_size:
                        await self._cleanup()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
                        self._wake.clear()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("outbox relay failed; retrying")
                    await asyncio.sleep(self.poll_seconds)
        finally:
            if listener is not None:
                with contextlib.suppress(Exception):
                    await listener.close()

    async def _listen(self) -> asyncpg.Connection | None:
        url = self.engine.url.render_as_string(hide_password=False)
        try:
            conn = await asyncpg.connect(asyncpg_dsn(url))
            await conn.add_listener(OUTBOX_CHANNEL, lambda *_: self._wake.set())
            return conn
        except Exception:
            log.warning("outbox relay cannot LISTEN; polling every %.1fs", self.poll_seconds)
            return None
