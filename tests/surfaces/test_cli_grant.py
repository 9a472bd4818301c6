"""`ooda events grant TEAM TOPIC`: a team's read-only subscription, on a real SASL broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError
from typer.testing import CliRunner

from ooda.bus import KafkaConnection
from ooda.testing import Infra, create_topics, delete_topics, kafka_env, unique
from ooda_cli import main as cli

pytestmark = pytest.mark.integration


def ooda(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(cli.app, list(args), env=env, terminal_width=200)


@pytest.fixture
async def platform(infra: Infra) -> AsyncIterator[tuple[Infra, str]]:
    if not infra.kafka().sasl:
        pytest.skip(f"the broker of {infra.origin} does not authenticate clients")
    prefix = unique("grant").replace("-", "") + "."
    await create_topics(infra, prefix)
    yield infra, prefix
    await delete_topics(infra, prefix)


def credentials(output: str) -> dict[str, str]:
    return dict(
        line.split("=", 1) for line in output.splitlines() if line.startswith("OODA_KAFKA_")
    )


async def test_a_granted_team_reads_the_topic_with_the_printed_credentials_and_cannot_write(
    platform: tuple[Infra, str],
) -> None:
    infra, prefix = platform
    admin_env = kafka_env(infra.kafka()) | {"OODA_TOPIC_PREFIX": prefix}
    team = unique("audit")
    result = await asyncio.to_thread(ooda, admin_env, "events", "grant", team, "alert-raised")
    assert result.exit_code == 0, result.output
    creds = credentials(result.output)
    assert creds["OODA_KAFKA_USERNAME"] == f"team-{team}"
    subscriber = KafkaConnection.from_env(creds)

    producer = AIOKafkaProducer(**infra.kafka("monitor").options())
    await producer.start()
    try:
        await producer.send_and_wait(prefix + "alert-raised", b"{}", key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        prefix + "alert-raised",
        **subscriber.options(),
        group_id=f"{team}.alerts",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        async with asyncio.timeout(20):
            while not await consumer.getmany(timeout_ms=500):
                pass
    finally:
        await consumer.stop()
    writer = AIOKafkaProducer(**subscriber.options())
    await writer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await writer.send_and_wait(prefix + "alert-raised", b"{}", key=b"k")
    finally:
        await writer.stop()

    # A second grant adds the topic and leaves the password alone; it is printed only once.
    again = await asyncio.to_thread(ooda, admin_env, "events", "grant", team, "deploy-done")
    assert again.exit_code == 0, again.output
    assert "already had credentials" in again.output and "OODA_KAFKA_PASSWORD" not in again.output

    # Revoked: the principal no longer authenticates.
    revoked = await asyncio.to_thread(ooda, admin_env, "events", "revoke", team)
    assert revoked.exit_code == 0 and "is deleted" in revoked.output, revoked.output
    gone = AIOKafkaProducer(**subscriber.options(), request_timeout_ms=5_000)
    with pytest.raises(KafkaError):
        await asyncio.wait_for(gone.start(), 30)
    await gone.stop()


async def test_only_the_admin_principal_may_grant(platform: tuple[Infra, str]) -> None:
    infra, prefix = platform
    env = kafka_env(infra.kafka("elastic")) | {"OODA_TOPIC_PREFIX": prefix}
    result = await asyncio.to_thread(ooda, env, "events", "grant", unique("x"), "deploy-done")
    assert result.exit_code != 0
    assert "admin principal" in result.output or "refused" in result.output
