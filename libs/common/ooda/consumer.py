"""Idempotent Kafka consumer: effects, the inbox record and dead letters commit together.

For each fetched batch:
1. decode every record (CloudEvent headers, known type, valid payload);
2. in ONE database transaction: skip ids already in the inbox, run the handler of each new event,
   record each in the inbox, and write undecodable records to the dead-letter topic through the
   outbox; commit;
3. only then commit the Kafka offsets (offset + 1). Auto-commit is off.

If a handler raises, the batch transaction rolls back and the batch is replayed one record per
transaction, each retried with backoff; a record that keeps failing is dead-lettered with its
error in the headers, and the loop goes on. Dead letters are bounded to what a record may be;
one that still cannot be written is written again cut short, and as a last resort the record is
skipped (logged and counted), so a record never stalls its partition. A crash anywhere replays
from the last committed offset and the inbox turns the replay into no-ops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from opentelemetry.trace import Link, SpanKind, get_current_span
from sqlalchemy import ARRAY, Text, cast, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ooda.bus import KafkaConnection, kafka_options
from ooda.db import Messaging, database_answers
from ooda.events import DecodeError, Event, decode
from ooda.events.envelope import Headers, UnknownEventType, verify_source
from ooda.metrics import CONSUMED, CONSUMER_FAILURES, CONSUMER_LAG, HANDLE_SECONDS
from ooda.outbox import MAX_RECORD_BYTES, Outbox, record_size
from ooda.telemetry import context_from, tracer

log = logging.getLogger(__name__)

Handler = Callable[[AsyncSession, Event], Awaitable[None]]
MAX_SPAN_LINKS = 128  # OpenTelemetry keeps at most this many links per span by default
TRUNCATED_HEADER_BYTES = 1024  # a dead letter too large to write keeps this much of each header
TRUNCATED_DEAD_LETTER_BYTES = 64 * 1024  # a dead letter that failed to be written is cut to this


@dataclass(frozen=True)
class BatchHandler:
    """A handler that applies all new events of its type in a fetched batch at once (in order).

    Use it where per-event round trips would bound throughput (e.g. one multi-row INSERT).
    Its processing span links to every event's producer span instead of being a child of one.
    """

    fn: Callable[[AsyncSession, list[Event]], Awaitable[None]]


def batched(fn: Callable[[AsyncSession, list[Event]], Awaitable[None]]) -> BatchHandler:
    """Mark `fn` as a batch handler."""
    return BatchHandler(fn)


class PermanentError(Exception):
    """A handler's verdict that retrying cannot help: the event goes straight to dead letters."""


@dataclass
class Incoming:
    """A fetched record, decoded or with the reason it could not be."""

    record: ConsumerRecord
    event: Event | None
    error: str | None
    ignored: bool = False

    @property
    def inbox_id(self) -> str:
        """The event id, or the record's coordinates when it has none."""
        if self.event is not None:
            return self.event.id
        r = self.record
        return f"kafka:{r.topic}:{r.partition}:{r.offset}"


def dead_letter_headers(item: Incoming, group: str, error: str, attempts: int) -> Headers:
    """Original headers plus why, where from and by whom the record was dead-lettered."""
    r = item.record
    extra = [
        ("ooda_dlq_error", error[:4000].encode()),
        ("ooda_dlq_consumer", group.encode()),
        ("ooda_dlq_topic", r.topic.encode()),
        ("ooda_dlq_partition", str(r.partition).encode()),
        ("ooda_dlq_offset", str(r.offset).encode()),
        ("ooda_dlq_attempts", str(attempts).encode()),
    ]
    return [(k, v) for k, v in (r.headers or ()) if v is not None] + extra


def bounded(
    key: bytes | None, headers: Headers, value: bytes, max_bytes: int, *, cut: bool = False
) -> tuple[Headers, bytes]:
    """A dead letter of at most `max_bytes` (as the producer counts): unchanged when it fits
    (unless `cut`), else header values cut to 1 KiB and the value to what is left, with an
    `ooda_dlq_truncated` header saying what was cut."""
    if not cut and record_size(key, headers, value) <= max_bytes:
        return headers, value
    short = [(k, v[:TRUNCATED_HEADER_BYTES]) for k, v in headers]
    room = max(0, max_bytes - record_size(key, short, b"") - 128)  # 128: the note below
    note = f"value {len(value)} -> {min(len(value), room)} bytes; header values cut to"
    note += f" {TRUNCATED_HEADER_BYTES} bytes"
    return [*short, ("ooda_dlq_truncated", note.encode())], value[:room]


class EventConsumer:
    """Consumes topics for one service and applies each event exactly once to its database."""

    def __init__(
        self,
        *,
        service: str,
        group_id: str,
        topics: Sequence[str],
        handlers: dict[str, Handler | BatchHandler],
        sessions: async_sessionmaker[AsyncSession],
        messaging: Messaging,
        outbox: Outbox,
        bootstrap: str | KafkaConnection,
        max_attempts: int = 4,
        backoff_seconds: float = 0.2,
        max_records: int = 500,
    ) -> None:
        self.service = service
        self.group_id = group_id
        self.topics = list(topics)
        self.handlers = handlers
        self.sessions = sessions
        self.inbox_row = messaging.inbox_row
        self.inbox = messaging.inbox
        self.outbox = outbox
        self.bootstrap = bootstrap
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.max_records = max_records
        self.consumer: AIOKafkaConsumer | None = None

    def _new_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            *self.topics,
            **kafka_options(self.bootstrap),
            group_id=self.group_id,
            client_id=f"{self.service}-{self.group_id}",
            enable_auto_commit=False,  # offsets are committed only after the database commit
            auto_offset_reset="earliest",  # a new group reads everything: nothing is lost
            isolation_level="read_committed",
            max_poll_records=self.max_records,
            max_poll_interval_ms=300_000,
        )

    async def start(self) -> None:
        """Join the group."""
        self.consumer = self._new_consumer()
        await self.consumer.start()

    async def stop(self) -> None:
        """Leave the group (offsets of processed batches are already committed)."""
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None

    async def run(self) -> None:
        """Fetch and process batches until cancelled."""
        if self.consumer is None:
            await self.start()
        assert self.consumer is not None
        while True:
            batches = await self.consumer.getmany(timeout_ms=500, max_records=self.max_records)
            if not batches:
                continue
            try:
                await self.process(batches)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Not committed: rewind so the batch is fetched again; the inbox dedupes.
                log.exception("batch not committed; it will be fetched again")
                for tp, records in batches.items():
                    self.consumer.seek(tp, records[0].offset)
                await asyncio.sleep(self.backoff_seconds)

    async def process(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Apply one fetched batch to the database, then commit its offsets."""
        assert self.consumer is not None
        started = time.perf_counter()
        items = [self._decode(r) for records in batches.values() for r in records]
        try:
            await self._apply(items)
        except Exception:
            log.warning("batch of %d failed; replaying one record at a time", len(items))
            for item in items:
                await self._apply_one_with_retries(item)
        await self.consumer.commit({tp: records[-1].offset + 1 for tp, records in batches.items()})
        HANDLE_SECONDS.labels(self.service).observe(time.perf_counter() - started)
        for tp in batches:
            high = self.consumer.highwater(tp)
            position = batches[tp][-1].offset + 1
            if high is not None:
                CONSUMER_LAG.labels(self.service, tp.topic, str(tp.partition)).set(high - position)

    def _decode(self, record: ConsumerRecord) -> Incoming:
        try:
            event = verify_source(decode(record.key, record.headers, record.value))
        except UnknownEventType as exc:
            return Incoming(record, None, str(exc), ignored=True)
        except DecodeError as exc:
            return Incoming(record, None, str(exc))
        ignored = event.type not in self.handlers
        return Incoming(record, event, None, ignored=ignored)

    async def _apply(self, items: list[Incoming]) -> None:
        """Apply items in one transaction; raise if any handler raises."""
        outcomes: list[tuple[Incoming, str]] = []
        inbox_rows: list[dict[str, str | None]] = []
        pending: dict[str, list[Incoming]] = {}
        async with self.sessions() as session, session.begin():
            ids = list({i.inbox_id for i in items})
            # One array parameter joined through unnest: a long IN list becomes a linear scan
            # per row once PostgreSQL switches the prepared statement to a generic plan.
            batch_ids = func.unnest(cast(ids, ARRAY(Text))).table_valued("id").render_derived()
            seen = set(
                (
                    await session.execute(
                        select(self.inbox.c.event_id)
                        .join(batch_ids, self.inbox.c.event_id == batch_ids.c.id)
                        .where(self.inbox.c.consumer == self.group_id)
                    )
                ).scalars()
            )
            for item in items:
                if item.inbox_id in seen:
                    outcomes.append((item, "duplicate"))
                    continue
                seen.add(item.inbox_id)
                if item.ignored:
                    outcome = "ignored"
                elif item.event is None:
                    self._dead_letter(session, item, item.error or "undecodable", attempts=0)
                    outcome = "dead_lettered"
                elif isinstance(self.handlers[item.event.type], BatchHandler):
                    pending.setdefault(item.event.type, []).append(item)
                    outcome = "handled"
                else:
                    await self._handle(session, item.event, item.record)
                    outcome = "handled"
                inbox_rows.append(self._inbox_row(item, outcome))
                outcomes.append((item, outcome))
            for event_type, batch in pending.items():
                await self._handle_batch(session, event_type, batch)
            if inbox_rows:
                await session.execute(insert(self.inbox), inbox_rows)
        for item, outcome in outcomes:
            CONSUMED.labels(self.service, item.record.topic, outcome).inc()

    async def _apply_one_with_retries(self, item: Incoming) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._apply([item])
                return
            except PermanentError as exc:
                error = f"{type(exc).__name__}: {exc}"
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                if not await self._database_up():
                    # The database, not the event, is the problem: wait, never dead-letter.
                    attempt -= 1
                    await asyncio.sleep(max(1.0, self.backoff_seconds))
                    continue
                if attempt < self.max_attempts:
                    CONSUMER_FAILURES.labels(self.service, item.record.topic).inc()
                    log.warning("handler failed (attempt %d): %s", attempt, error)
                    await asyncio.sleep(self.backoff_seconds * 2 ** (attempt - 1))
                    continue
            CONSUMER_FAILURES.labels(self.service, item.record.topic).inc()
            log.error("dead-lettering %s after %d attempts: %s", item.inbox_id, attempt, error)
            await self._dead_letter_or_skip(item, error, attempt)
            return

    async def _dead_letter_or_skip(self, item: Incoming, error: str, attempts: int) -> None:
        """Dead-letter one record in its own transaction; never raise, never loop forever.

        A dead letter that cannot be written is written again as a truncated copy; when that
        fails too the record is skipped: logged, counted (outcome `skipped`) and, if possible,
        recorded in the inbox. Only a database outage makes it wait and try again.
        """
        limits = [MAX_RECORD_BYTES, TRUNCATED_DEAD_LETTER_BYTES]  # whole if it fits, then cut
        while limits:
            try:
                async with self.sessions() as session, session.begin():
                    already = await session.get(self.inbox_row, (self.group_id, item.inbox_id))
                    if already is not None:
                        return
                    self._dead_letter(session, item, error, attempts, max_bytes=limits[0])
                    await session.execute(
                        insert(self.inbox), [self._inbox_row(item, "dead_lettered", error)]
                    )
                CONSUMED.labels(self.service, item.record.topic, "dead_lettered").inc()
                return
            except Exception as exc:
                if not await self._database_up():
                    await asyncio.sleep(max(1.0, self.backoff_seconds))
                    continue
                log.warning("cannot write the dead letter of %s: %s", item.inbox_id, exc)
                limits.pop(0)
        log.error("skipping %s: its dead letter cannot be written (%s)", item.inbox_id, error)
        try:
            async with self.sessions() as session, session.begin():
                await session.execute(insert(self.inbox), [self._inbox_row(item, "skipped", error)])
        except Exception as exc:
            log.error("cannot record the skipped %s in the inbox: %s", item.inbox_id, exc)
        CONSUMED.labels(self.service, item.record.topic, "skipped").inc()

    async def _database_up(self) -> bool:
        return await database_answers(self.sessions)

    async def _handle(self, session: AsyncSession, event: Event, record: ConsumerRecord) -> None:
        parent = context_from(event.traceparent, event.tracestate)
        with tracer.start_as_current_span(
            f"{record.topic} process",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": record.topic,
                "messaging.consumer.group.name": self.group_id,
                "messaging.message.id": event.id,
                "messaging.kafka.offset": record.offset,
                "ooda.app": event.subject,
            },
        ):
            handler = self.handlers[event.type]
            assert not isinstance(handler, BatchHandler)
            await handler(session, event)

    async def _handle_batch(
        self, session: AsyncSession, event_type: str, items: list[Incoming]
    ) -> None:
        handler = self.handlers[event_type]
        assert isinstance(handler, BatchHandler)
        events = [i.event for i in items if i.event is not None]
        links = [
            Link(span.get_span_context())
            for e in events[:MAX_SPAN_LINKS]
            if (span := get_current_span(context_from(e.traceparent, e.tracestate)))
            .get_span_context()
            .is_valid
        ]
        with tracer.start_as_current_span(
            f"{items[0].record.topic} process",
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": items[0].record.topic,
                "messaging.consumer.group.name": self.group_id,
                "messaging.batch.message_count": len(events),
            },
        ):
            await handler.fn(session, events)

    def _inbox_row(
        self, item: Incoming, outcome: str, error: str | None = None
    ) -> dict[str, str | None]:
        return {
            "consumer": self.group_id,
            "event_id": item.inbox_id,
            "topic": item.record.topic,
            "outcome": outcome,
            "error": None if outcome == "handled" else (error or item.error),
        }

    def _dead_letter(
        self,
        session: AsyncSession,
        item: Incoming,
        error: str,
        attempts: int,
        max_bytes: int = MAX_RECORD_BYTES,
    ) -> None:
        r = item.record
        headers = dead_letter_headers(item, self.group_id, error, attempts)
        cut = max_bytes < MAX_RECORD_BYTES  # the retry of a dead letter that failed: cut it
        headers, value = bounded(r.key, headers, r.value or b"", max_bytes, cut=cut)
        self.outbox.add_record(
            session, f"{r.topic}.dlq", r.key, headers, value, event_id=item.inbox_id[:200]
        )
