"""A subscriber from another team: consume platform events with the `ooda` library.

    .venv/bin/python examples/subscriber.py deploy-done alert-raised
    .venv/bin/python examples/subscriber.py --group my-team --count 5 change-progressed

It joins a consumer group (so a restart resumes where it stopped), decodes every record with
`ooda.events.decode` into a typed payload (`event.data` is a `DeployDone`, an `AlertRaised`, ...),
skips event types it does not know (a newer producer), records that are not events and events
whose `ce_source` may not publish their type, dedupes on the CloudEvents id (delivery is
at-least-once), and commits offsets only after handling.

The bus authenticates every client. Ask an admin for your team's read-only principal:

    ooda events grant my-team deploy-done      # prints OODA_KAFKA_* credentials, once

and export what it prints. The principal reads the granted topics in consumer groups named
`my-team.<anything>` (the default group here is `my-team.example-subscriber`).
Settings: `OODA_KAFKA_BOOTSTRAP` (default 127.0.0.1:9092), `OODA_KAFKA_SECURITY_PROTOCOL`,
`OODA_KAFKA_SASL_MECHANISM`, `OODA_KAFKA_USERNAME`, `OODA_KAFKA_PASSWORD`, `OODA_TOPIC_PREFIX`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from ooda.bus import KafkaConnection
from ooda.events import DeployDone, Event, decode, verify_source
from ooda.events.envelope import DecodeError, UnknownEventType

Handler = Callable[[Event], Awaitable[None]]


async def print_event(event: Event) -> None:
    """The example's handler: one line per event, typed fields where it knows the type."""
    data = event.data
    if isinstance(data, DeployDone):
        detail = f"{data.kind} {data.outcome} version={data.version} replicas={data.replicas}"
    else:
        detail = data.model_dump_json(exclude={"app"})
    print(f"{event.time.isoformat()} {event.type} app={event.subject} id={event.id} {detail}")
    sys.stdout.flush()


async def subscribe(
    topics: list[str],
    handle: Handler,
    *,
    group: str,
    kafka: KafkaConnection,
    prefix: str = "",
    count: int | None = None,
    from_beginning: bool = True,
) -> int:
    """Consume `topics` as consumer group `group`, calling `handle` once per new event.

    Returns the number of events handled (when `count` is reached; otherwise runs until
    cancelled).
    """
    consumer = AIOKafkaConsumer(
        *(prefix + t for t in topics),
        **kafka.options(),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        isolation_level="read_committed",
    )
    seen: OrderedDict[str, None] = OrderedDict()  # recent ids: redeliveries become no-ops
    handled = 0
    await consumer.start()
    try:
        while count is None or handled < count:
            batches = await consumer.getmany(timeout_ms=1000)
            done: dict[TopicPartition, int] = {}  # next offset per partition, once handled
            for tp, records in batches.items():
                for record in records:
                    if count is not None and handled >= count:
                        break  # left uncommitted: the next run starts at this record
                    done[tp] = record.offset + 1
                    try:
                        event = verify_source(decode(record.key, record.headers, record.value))
                    except UnknownEventType:
                        continue  # a type this subscriber does not know yet: skip, never fail
                    except DecodeError as exc:
                        print(f"skipping {record.topic}@{record.offset}: {exc}", file=sys.stderr)
                        continue
                    if event.id in seen:
                        continue
                    await handle(event)
                    seen[event.id] = None
                    if len(seen) > 10_000:
                        seen.popitem(last=False)
                    handled += 1
            if done:
                await consumer.commit(done)  # after handling: a crash replays, never loses
    finally:
        await consumer.stop()
    return handled


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the OODA platform's events as they come")
    parser.add_argument("topics", nargs="+", help="e.g. deploy-done alert-raised")
    kafka = KafkaConnection.from_env()
    team = (kafka.username or "").removeprefix("team-")
    default_group = f"{team}.example-subscriber" if kafka.username else "example-subscriber"
    parser.add_argument(
        "--group", default=default_group, help=f"Kafka consumer group [{default_group}]"
    )
    parser.add_argument("--count", type=int, default=None, help="stop after N events")
    parser.add_argument("--latest", action="store_true", help="a new group starts at the end")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            subscribe(
                args.topics,
                print_event,
                group=args.group,
                kafka=kafka,
                prefix=os.environ.get("OODA_TOPIC_PREFIX", ""),
                count=args.count,
                from_beginning=not args.latest,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
