"""The example subscriber, run as another team would run it, receives and decodes live events."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx
import pytest

from ooda.auth import issue_token
from ooda.bus import grant_subscriber, revoke_subscriber
from ooda.testing import unique

from .conftest import Surface

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "subscriber.py"


async def test_the_example_subscriber_decodes_a_live_cmdb_changed_event(surface: Surface) -> None:
    app = unique("sub")
    team = unique("team")
    env = dict(os.environ) | surface.cli_env
    if surface.infra.kafka().sasl:  # as another team runs it: with its own read-only principal
        topic = surface.prefix + "cmdb-changed"
        user, password = await grant_subscriber(surface.infra.kafka(), team, topic)
        assert password is not None
        env |= {"OODA_KAFKA_USERNAME": user, "OODA_KAFKA_PASSWORD": password}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        "--group",
        f"{team}.example",
        "--latest",
        "cmdb-changed",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    attempt = 0
    try:
        token = issue_token(surface.infra.auth_secret, "team-lead", ["team:web"], audience="cmdb")
        async with httpx.AsyncClient(timeout=10) as client, asyncio.timeout(45):
            # keep declaring until the subscriber (joining its group) has seen the live event
            while not any(f"app={app}" in line for line in lines):
                attempt += 1
                response = await client.put(
                    f"{surface.url('cmdb')}/v1/apps/{app}",
                    json={"owner_team": "web", "labels": {"try": str(attempt)}},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert response.status_code in (200, 201), response.text
                try:
                    async with asyncio.timeout(3):
                        while line := (await proc.stdout.readline()).decode():
                            lines.append(line)
                except TimeoutError:
                    pass
    finally:
        proc.terminate()
        _, stderr = await proc.communicate()
        if surface.infra.kafka().sasl:
            await revoke_subscriber(surface.infra.kafka(), team)
    mine = [line for line in lines if f"app={app}" in line]
    assert mine[0].split()[1] == "io.ooda.cmdb.changed.v1"
    assert '"actor":"team-lead"' in mine[0]
    assert f'"id":"{app}"' in mine[0] and '"op":' in mine[0]
    assert b"Traceback" not in stderr
