"""The event bus authenticates every client and lets each principal do only what the ACL file
(deploy/local/acls.txt) allows, on a real broker with SASL/SCRAM and the StandardAuthorizer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    TopicAuthorizationFailedError,
)

from ooda.bus import KafkaConnection, grant_subscriber, revoke_subscriber
from ooda.events import DeployDone, Event, encode
from ooda.examples import example_payloads
from ooda.testing import Infra, unique

from .conftest import read_topic

pytestmark = pytest.mark.integration


@pytest.fixture
def sasl(infra: Infra) -> Infra:
    """The session's infrastructure, when its broker authenticates clients."""
    if not infra.kafka().sasl:
        # Testcontainers' broker runs PLAINTEXT without ACLs (see deploy/compose/README.md).
        pytest.skip(f"the broker of {infra.origin} does not authenticate clients")
    return infra


async def send(conn: KafkaConnection, topic: str, value: bytes = b"{}") -> None:
    producer = AIOKafkaProducer(**conn.options(), request_timeout_ms=10_000)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()


@pytest.fixture
async def prefix(sasl: Infra) -> AsyncIterator[str]:
    from ooda.testing import create_topics, delete_topics

    value = unique("bus").replace("-", "") + "."
    await create_topics(sasl, value)
    yield value
    await delete_topics(sasl, value)


async def test_a_service_may_not_write_a_topic_it_does_not_produce(
    sasl: Infra, prefix: str
) -> None:
    monitor = sasl.kafka("monitor")
    await send(monitor, prefix + "metric-observed")  # its own topic: accepted
    # A change-requested written by the monitor (e.g. with `emergency: true`) is refused by the
    # broker: only the CMDB and elastic may request changes.
    with pytest.raises(TopicAuthorizationFailedError):
        await send(monitor, prefix + "change-requested")


async def test_a_client_without_valid_credentials_is_refused(sasl: Infra, prefix: str) -> None:
    admin = sasl.kafka()
    anonymous = KafkaConnection(admin.bootstrap)  # PLAINTEXT on the SASL listener
    with pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(send(anonymous, prefix + "metric-observed"), 30)
    wrong = admin.as_user("monitor", "not-the-password")
    with pytest.raises(KafkaError):
        await asyncio.wait_for(send(wrong, prefix + "metric-observed"), 30)


async def test_a_granted_subscriber_reads_its_topic_but_cannot_write_or_read_others(
    sasl: Infra, prefix: str
) -> None:
    team = unique("payments")
    topic = prefix + "deploy-done"
    payload = next(p for p in example_payloads(unique("app")) if isinstance(p, DeployDone))
    key, headers, value = encode(Event.new(payload, source="/ooda/pipeline"))
    producer = AIOKafkaProducer(**sasl.kafka("pipeline").options())
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()

    username, password = await grant_subscriber(sasl.kafka(), team, topic)
    assert password is not None
    subscriber = sasl.kafka().as_user(username, password)
    (record,) = await read_topic_as(subscriber, topic, group=f"{team}.audit")
    assert record.value == value

    with pytest.raises(TopicAuthorizationFailedError):
        await send(subscriber, topic)
    with pytest.raises(GroupAuthorizationFailedError):
        await read_topic_as(subscriber, topic, group=unique("other-team"))
    with pytest.raises(TopicAuthorizationFailedError):
        await read_topic_as(subscriber, prefix + "change-requested", group=f"{team}.audit")
    # The admin still reads everything (tooling, dead letters).
    assert len(await read_topic(sasl, topic, 1)) == 1

    # Revoking the topic takes it away at once; revoking the team deletes the principal.
    await revoke_subscriber(sasl.kafka(), team, topic)
    with pytest.raises(TopicAuthorizationFailedError):
        await read_topic_as(subscriber, topic, group=f"{team}.audit")
    await revoke_subscriber(sasl.kafka(), team)


async def read_topic_as(conn: KafkaConnection, topic: str, group: str) -> list[object]:
    """The first record of `topic`, read as `conn` in consumer group `group`."""
    consumer = AIOKafkaConsumer(
        topic,
        **conn.options(),
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        async with asyncio.timeout(20):
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                records = [r for rs in batch.values() for r in rs]
                if records:
                    await consumer.commit()
                    return records[:1]
    finally:
        await consumer.stop()
