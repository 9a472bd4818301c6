"""`ooda events tail`: read a topic from any offset and pretty-print its CloudEvents;
`ooda events grant`: a team's read-only subscription to a topic."""

from __future__ import annotations

import asyncio
import json
import os
import re
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.json import JSON

from ooda.bus import (
    BusError,
    KafkaConnection,
    grant_subscriber,
    revoke_subscriber,
    subscriber_principal,
)
from ooda.events import DecodeError, Event, decode
from ooda.events.contracts import topics
from ooda_cli.client import FAILED, OK, UNAVAILABLE, USAGE, CliError


@dataclass(frozen=True)
class KafkaSettings:
    """The broker, how to authenticate to it, and the topic prefix of the platform to read
    (`OODA_KAFKA_BOOTSTRAP`, `OODA_KAFKA_USERNAME`, ... as `ooda.bus.KafkaConnection` reads)."""

    conn: KafkaConnection
    prefix: str

    @property
    def bootstrap(self) -> str:
        return self.conn.bootstrap


def kafka_settings(env: dict[str, str] | None = None) -> KafkaSettings:
    env = dict(os.environ) if env is None else env
    try:
        conn = KafkaConnection.from_env(env)
    except ValueError as exc:
        raise CliError(f"Kafka settings: {exc}", USAGE) from exc
    return KafkaSettings(conn, env.get("OODA_TOPIC_PREFIX", ""))


def event_record(event: Event, topic: str, partition: int, offset: int) -> dict[str, Any]:
    """A decoded event as one JSON-ready dict: where it was, its CloudEvents attributes, data."""
    return {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "id": event.id,
        "type": event.type,
        "source": event.source,
        "subject": event.subject,
        "time": event.time.isoformat(),
        "data": event.data.model_dump(mode="json"),
    }


def render(
    console: Console,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    headers: list[tuple[str, bytes]] | None,
    value: bytes | None,
    raw: bool,
) -> bool:
    """Print one record; True when it decoded as a platform event."""
    try:
        event = decode(key, headers, value)
    except DecodeError as exc:
        if raw:
            console.print_json(
                data={"topic": topic, "partition": partition, "offset": offset, "error": str(exc)}
            )
        else:
            console.print(f"[red]{topic}[{partition}]@{offset} undecodable:[/] {exc}")
        return False
    record = event_record(event, topic, partition, offset)
    if raw:
        console.print(json.dumps(record), soft_wrap=True, markup=False, highlight=False)
        return True
    console.rule(
        f"[bold]{event.type}[/] · {event.subject} · {topic}[{partition}]@{offset}", align="left"
    )
    console.print(f"id {event.id}  source {event.source}  time {record['time']}")
    console.print(JSON.from_data(record["data"]))
    return True


async def _tail(
    topic: str,
    from_beginning: bool,
    offset: int | None,
    count: int | None,
    idle: float | None,
    raw: bool,
    console: Console,
    settings: KafkaSettings,
) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaConnectionError, KafkaError

    name = settings.prefix + topic
    consumer = AIOKafkaConsumer(
        **settings.conn.options(),
        enable_auto_commit=False,
        request_timeout_ms=10_000,
        connections_max_idle_ms=60_000,
    )
    try:
        async with asyncio.timeout(15):
            await consumer.start()
    except (KafkaConnectionError, KafkaError, TimeoutError, OSError) as exc:
        await consumer.stop()
        raise CliError(
            f"Kafka is unavailable at {settings.bootstrap} ({exc!r}); is the platform running, "
            "or is OODA_KAFKA_BOOTSTRAP right?",
            UNAVAILABLE,
        ) from exc
    try:
        # aiokafka offers no public call giving a topic's partitions without a group
        metadata = await consumer._client.fetch_all_metadata()
        ids = metadata.partitions_for_topic(name)
        if not ids:
            raise CliError(f"topic {name!r} does not exist on {settings.bootstrap}", FAILED)
        assigned = [TopicPartition(name, p) for p in sorted(ids)]
        consumer.assign(assigned)
        if from_beginning:
            await consumer.seek_to_beginning(*assigned)
        elif offset is not None:
            ends = await consumer.end_offsets(assigned)
            starts = await consumer.beginning_offsets(assigned)
            for tp in assigned:
                consumer.seek(tp, min(max(offset, starts[tp]), ends[tp]))
        else:
            await consumer.seek_to_end(*assigned)
        seen = 0
        while count is None or seen < count:
            batch = await consumer.getmany(timeout_ms=int((idle or 3600) * 1000))
            if not batch:
                if idle is not None:
                    break
                continue
            for tp, records in sorted(batch.items(), key=lambda kv: kv[0].partition):
                for record in records:
                    headers = [(k, v) for k, v in record.headers]
                    render(
                        console,
                        topic,
                        tp.partition,
                        record.offset,
                        record.key,
                        headers,
                        record.value,
                        raw,
                    )
                    seen += 1
                    if count is not None and seen >= count:
                        break
                if count is not None and seen >= count:
                    break
        if not raw:
            console.print(f"[dim]{seen} event(s)[/]")
        return OK
    finally:
        await consumer.stop()


def tail(
    topic: str,
    from_beginning: bool,
    offset: int | None,
    count: int | None,
    idle: float | None,
    raw: bool,
    console: Console,
    settings: KafkaSettings,
) -> int:
    """Read `topic` (a catalog topic or its `.dlq`) and print each event; the exit code."""
    if topic not in topics():
        raise CliError(f"unknown topic {topic!r}; one of: {', '.join(topics())}", USAGE)
    try:
        return asyncio.run(
            _tail(topic, from_beginning, offset, count, idle, raw, console, settings)
        )
    except KeyboardInterrupt:
        return OK


TEAM_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$")


def grant(team: str, topic: str, rotate: bool, console: Console, settings: KafkaSettings) -> int:
    """Let `team` read `topic` with a principal of its own; print new credentials once."""
    if not TEAM_PATTERN.match(team):
        raise CliError(
            f"team {team!r}: lowercase letters, digits and dashes (it names a Kafka principal)",
            USAGE,
        )
    if topic not in topics():
        raise CliError(f"unknown topic {topic!r}; one of: {', '.join(topics())}", USAGE)
    if not settings.conn.sasl:
        raise CliError(
            "this broker does not authenticate clients (OODA_KAFKA_SECURITY_PROTOCOL is "
            f"{settings.conn.security_protocol}): there is nothing to grant",
            USAGE,
        )
    name = settings.prefix + topic
    try:
        username, password = asyncio.run(
            asyncio.wait_for(grant_subscriber(settings.conn, team, name, new_password=rotate), 60)
        )
    except BusError as exc:
        raise CliError(f"{exc} (is OODA_KAFKA_USERNAME the admin principal?)", FAILED) from exc
    except Exception as exc:
        raise CliError(
            f"Kafka refused or is unavailable at {settings.bootstrap}: {exc!r}", UNAVAILABLE
        ) from exc
    console.print(
        f"# {username} may read {name}, in consumer groups named '{team}.<anything>'.",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    if password is None:
        console.print(
            f"# {username} already had credentials: they are unchanged "
            "(--rotate-password issues new ones and invalidates the old).",
            markup=False,
            highlight=False,
        )
        return OK
    console.print(
        "# Its credentials, shown once and stored nowhere else; hand them to the team:",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    conn = settings.conn
    for key, value in (
        ("OODA_KAFKA_BOOTSTRAP", conn.bootstrap),
        ("OODA_KAFKA_SECURITY_PROTOCOL", conn.security_protocol),
        ("OODA_KAFKA_SASL_MECHANISM", conn.sasl_mechanism),
        ("OODA_KAFKA_USERNAME", username),
        ("OODA_KAFKA_PASSWORD", password),
    ):
        console.print(f"{key}={value}", markup=False, highlight=False, soft_wrap=True)
    return OK


def revoke(team: str, topic: str | None, console: Console, settings: KafkaSettings) -> int:
    """Take `topic` away from `team`, or (no topic) its principal altogether."""
    if topic is not None and topic not in topics():
        raise CliError(f"unknown topic {topic!r}; one of: {', '.join(topics())}", USAGE)
    if not settings.conn.sasl:
        raise CliError(
            "this broker does not authenticate clients: there is nothing to revoke", USAGE
        )
    try:
        username = asyncio.run(
            asyncio.wait_for(
                revoke_subscriber(
                    settings.conn, team, None if topic is None else settings.prefix + topic
                ),
                60,
            )
        )
    except BusError as exc:
        raise CliError(f"{exc} (is OODA_KAFKA_USERNAME the admin principal?)", FAILED) from exc
    except Exception as exc:
        raise CliError(
            f"Kafka refused or is unavailable at {settings.bootstrap}: {exc!r}", UNAVAILABLE
        ) from exc
    what = f"may no longer read {settings.prefix + topic}" if topic else "is deleted"
    console.print(f"{username} {what}", markup=False, highlight=False, soft_wrap=True)
    return OK


__all__ = ["grant", "kafka_settings", "revoke", "subscriber_principal", "tail"]
