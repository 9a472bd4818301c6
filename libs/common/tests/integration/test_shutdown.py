"""A service stops on SIGTERM even while Kafka is unreachable (a bounded shutdown)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from ooda.testing import Infra, ServiceProcess, create_database, free_port

pytestmark = pytest.mark.integration


async def test_a_service_stops_on_sigterm_while_kafka_is_unreachable(
    infra: Infra, tmp_path: Path
) -> None:
    port = free_port()
    env = dict(os.environ) | {
        "OODA_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",  # nothing listens there
        "OODA_AUTH_SECRET": infra.auth_secret,
        "OODA_TOPIC_PREFIX": "shutdown.",
        "DECISION_DATABASE_URL": await create_database(infra, "decision"),
        "DECISION_PORT": str(port),
    }
    service = ServiceProcess("decision", env, port, tmp_path / "decision.log")
    service.start()
    assert service.process is not None
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            for _ in range(300):
                try:
                    if (await client.get(f"{service.url}/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
            else:
                pytest.fail(f"never answered /healthz: {service.log_path.read_text()[-2000:]}")
        await asyncio.sleep(2.0)  # its consumers and producer are trying to reach Kafka
        os.killpg(service.process.pid, signal.SIGTERM)
        try:
            code = await asyncio.to_thread(service.process.wait, 30)
        except subprocess.TimeoutExpired:
            pytest.fail("still running 30 s after SIGTERM")
        # uvicorn shuts the app down, then exits by the signal it caught.
        log = service.log_path.read_text()
        assert code in (0, -signal.SIGTERM), f"exit code {code}: {log[-800:]}"
        assert "Application shutdown complete" in log
    finally:
        service.kill()
