"""Kill -9 the pipeline mid-rollout or mid-rollback: it resumes and finishes exactly once."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from ooda.auth import issue_token
from ooda.events import ChangeProgressed, DeployDone
from ooda.testing import (
    ServiceProcess,
    create_database,
    create_topics,
    delete_topics,
    free_port,
    kafka_env,
    unique,
)

pytestmark = pytest.mark.integration


async def pipeline_process(kit: Any, tmp_path: Path, prefix: str) -> ServiceProcess:
    """The pipeline as its own process (`ooda-pipeline`) on a fresh database, not started."""
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "PIPELINE_DATABASE_URL": await create_database(kit.infra, "pipeline"),
        "PIPELINE_PORT": str(port),
        "PIPELINE_CMDB_URL": kit.cmdb.url,
        "PIPELINE_DATA_DIR": str(tmp_path / "data"),
        "PIPELINE_EXECUTOR_POLL_SECONDS": "0.1",
        "PIPELINE_OUTBOX_POLL_SECONDS": "0.2",
        **kafka_env(kit.infra.kafka("pipeline")),
        "OODA_AUTH_SECRET": kit.infra.auth_secret,
        "OODA_TOPIC_PREFIX": prefix,
    }
    return ServiceProcess("pipeline", env, port, tmp_path / "pipeline.log")


async def test_a_rollout_killed_mid_batch_resumes_without_orphans_or_duplicates(
    kit: Any, tmp_path: Path
) -> None:
    app = unique("shop")
    kit.cmdb.add_app(app, owner="shop-team")
    prefix = unique("crash").replace("-", "") + "."
    await create_topics(kit.infra, prefix)
    data_dir = tmp_path / "data"
    service = await pipeline_process(kit, tmp_path, prefix)
    token = issue_token(kit.infra.auth_secret, "ci", ["team:shop-team"], audience="pipeline")
    headers = {"Authorization": f"Bearer {token}"}
    try:
        service.start()
        await service.wait_ready()
        async with httpx.AsyncClient(base_url=service.url, trust_env=False) as client:
            slow = await kit.upload(client, headers, kit.artifacts.slow, "shop-slow.pyz")
            change_id = await kit.request_deploy(client, headers, app, "v1", slow, {"size": 1}, 6)
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


async def test_an_automatic_rollback_killed_mid_batch_resumes_and_finishes_once(
    kit: Any, tmp_path: Path
) -> None:
    app = unique("shop")
    kit.cmdb.add_app(app, owner="shop-team", replicas=6)
    # One instance fills a host (4000 millicores): once the 6 hosts hold v1, a release
    # replaces in place (stop first), and its rollback has to start v1 instances again.
    kit.cmdb.specs[app]["resources"] = {"cpu_millis": 4000, "memory_mib": 64}
    shared_hosts = kit.cmdb.hosts
    prefix = unique("crash").replace("-", "") + "."
    await create_topics(kit.infra, prefix)
    data_dir = tmp_path / "data"
    service = await pipeline_process(kit, tmp_path, prefix)
    token = issue_token(kit.infra.auth_secret, "ci", ["release"], audience="pipeline")
    headers = {"Authorization": f"Bearer {token}"}

    async def deploy(
        client: httpx.AsyncClient, version: str, artifact: str, batch: dict[str, int]
    ) -> str:
        return str(await kit.request_deploy(client, headers, app, version, artifact, batch, 6))

    try:
        service.start()
        await service.wait_ready()
        async with httpx.AsyncClient(base_url=service.url, trust_env=False) as client:
            # v1 warms up for 1 s, so each batch of the rollback takes that long to be ready.
            slow = await kit.upload(
                client, headers, kit.artifacts.slow, "shop-slow.pyz", "shop-team"
            )
            bad = await kit.upload(client, headers, kit.artifacts.bad, "shop-bad.pyz", "shop-team")
            v1 = await kit.wait_for_change(
                client, await deploy(client, "v1", slow, {"size": 6}), kit.finished
            )
            assert v1["state"] == "succeeded", v1["reason"]
            # What the CMDB reports once it learnt v1's instances from deploy-done.
            kit.cmdb.hosts = [
                host | {"allocated": {"cpu_millis": 4000, "memory_mib": 64}}
                for host in shared_hosts
            ]
            # v2 never becomes ready, so its first batch fails and the change rolls back.
            change_id = await deploy(client, "v2", bad, {"size": 2, "max_unavailable": 2})

            def rollback_in_flight(change: dict[str, Any]) -> bool:
                rollback = change["rollback"]
                return (
                    change["state"] == "rolling_back"
                    and rollback is not None
                    and rollback["done"] < rollback["started"]
                )

            # Kill once a rollback batch has spawned its v1 instances, before they are ready.
            async with asyncio.timeout(40):
                while True:
                    change = (await client.get(f"/v1/changes/{change_id}")).json()
                    assert not kit.finished(change), change["reason"]
                    spawned = {i for i in kit.running_instance_ids(data_dir) if "-rb-" in i}
                    if rollback_in_flight(change) and spawned:
                        break
                    await asyncio.sleep(0.05)
        service.kill()
        survivors = {i for i in kit.running_instance_ids(data_dir) if "-rb-" in i}
        assert survivors  # the rollback's instances outlive the pipeline; it adopts them

        service.start()
        await service.wait_ready()
        async with httpx.AsyncClient(base_url=service.url, trust_env=False) as client:
            done = await kit.wait_for_change(client, change_id, kit.finished)
            assert done["state"] == "rolled_back", done["reason"]
            assert "not ready" in done["reason"], done["reason"]
            live = (await client.get(f"/v1/apps/{app}/instances")).json()
        assert sorted(i["version"] for i in live) == ["v1"] * 6
        assert survivors <= {i["id"] for i in live}
        assert {i["id"] for i in live} == kit.running_instance_ids(data_dir)
        assert len({i["endpoint"] for i in live}) == 6

        dones = await kit.read_events(
            kit.infra,
            prefix + "deploy-done",
            lambda found: sum(e.data.app == app for e in found) >= 2,
            settle=1.5,
        )
        finals = [e.data for e in dones if e.data.app == app and e.data.change_id == change_id]
        assert len(finals) == 1
        (final,) = finals
        assert isinstance(final, DeployDone) and final.outcome == "rolled_back"
        assert {i.id for i in final.instances} == {i["id"] for i in live}
        progressed = await kit.read_events(
            kit.infra,
            prefix + "change-progressed",
            lambda found: any(
                e.data.change_id == change_id and e.data.message == "ChangeRolledBack"
                for e in found
            ),
            settle=1.5,
        )
        # Every rollback batch started and succeeded once (the one in flight was resumed, not
        # started again), and the change rolled back once.
        seen = Counter(
            (e.data.message.split(":")[0], e.data.batch)
            for e in progressed
            if isinstance(e.data, ChangeProgressed) and e.data.change_id == change_id
        )
        assert seen[("ChangeRolledBack", 0)] == 1, seen
        for number in range(1, done["rollback"]["batches"] + 1):
            assert seen[("BatchStarted (rollback)", number)] == 1, seen
            assert seen[("BatchSucceeded (rollback)", number)] == 1, seen
    finally:
        kit.cmdb.hosts = shared_hosts
        service.stop()
        kit.kill_instances(data_dir)
        await delete_topics(kit.infra, prefix)
