"""Kill -9 the pipeline process in the middle of a rollout: it resumes, exactly once."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from ooda.auth import issue_token
from ooda.events import DeployDone
from ooda.testing import (
    ServiceProcess,
    create_database,
    create_topics,
    delete_topics,
    free_port,
    unique,
)

pytestmark = pytest.mark.integration


async def test_a_rollout_killed_mid_batch_resumes_without_orphans_or_duplicates(
    kit: Any, tmp_path: Path
) -> None:
    app = unique("shop")
    kit.cmdb.add_app(app, owner="shop-team")
    prefix = unique("crash").replace("-", "") + "."
    await create_topics(kit.infra, prefix)
    data_dir = tmp_path / "data"
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "PIPELINE_DATABASE_URL": await create_database(kit.infra, "pipeline"),
        "PIPELINE_PORT": str(port),
        "PIPELINE_CMDB_URL": kit.cmdb.url,
        "PIPELINE_DATA_DIR": str(data_dir),
        "PIPELINE_EXECUTOR_POLL_SECONDS": "0.1",
        "PIPELINE_OUTBOX_POLL_SECONDS": "0.2",
        "PIPELINE_PYTHON": sys.executable,
        "OODA_KAFKA_BOOTSTRAP": kit.infra.kafka_bootstrap,
        "OODA_AUTH_SECRET": kit.infra.auth_secret,
        "OODA_TOPIC_PREFIX": prefix,
    }
    service = ServiceProcess("pipeline", env, port, tmp_path / "pipeline.log")
    token = issue_token(kit.infra.auth_secret, "ci", ["team:shop-team"])
    headers = {"Authorization": f"Bearer {token}"}
    try:
        service.start()
        await service.wait_ready()
        async with httpx.AsyncClient(base_url=service.url, trust_env=False) as client:
            slow = await kit.upload(client, headers, kit.artifacts.slow, "shop-slow.pyz")
            created = await client.post(
                "/v1/changes",
                headers=headers,
                json={
                    "app": app,
                    "kind": "deploy",
                    "idempotency_key": unique("rel"),
                    "target": {"version": "v1", "artifact": slow, "replicas": 6},
                    "batch": {"size": 1},
                },
            )
            assert created.status_code == 201, created.text
            change_id = created.json()["id"]
            await kit.wait_for_change(
                client,
                change_id,
                lambda c: c["rollout"] is not None and c["rollout"]["started"] >= 3,
            )
        service.kill()
        survivors = kit.running_instance_ids(data_dir)
        assert 2 <= len(survivors) <= 3  # instances outlive the pipeline; it adopts them

        service.start()
        await service.wait_ready()
        async with httpx.AsyncClient(base_url=service.url, trust_env=False) as client:
            done = await kit.wait_for_change(client, change_id, kit.finished)
            assert done["state"] == "succeeded", done["reason"]
            live = (await client.get(f"/v1/apps/{app}/instances")).json()
        assert len(live) == 6
        assert survivors <= {i["id"] for i in live}
        assert {i["id"] for i in live} == kit.running_instance_ids(data_dir)
        assert len({i["endpoint"] for i in live}) == 6

        events = await kit.read_events(
            kit.infra,
            prefix + "deploy-done",
            lambda found: any(e.data.app == app for e in found),
            settle=1.5,
        )
        finals = [e.data for e in events if e.data.app == app]
        assert len(finals) == 1
        (final,) = finals
        assert isinstance(final, DeployDone) and final.change_id == change_id
        assert {i.id for i in final.instances} == {i["id"] for i in live}
    finally:
        service.stop()
        kit.kill_instances(data_dir)
        await delete_topics(kit.infra, prefix)
