"""The metric gate with a real monitor: a version that is ready but errs is rolled back.

The monitor runs as its own process (`ooda-monitor`, own database and topics) and scrapes the
real workload instances the pipeline starts. Its service discovery is the fake CMDB's, which
lists only what a real CMDB knows: the instance set of the application's last `deploy-done`
(read from Kafka). A batch's new instances are therefore scraped only because the gate
announces them to the monitor. Traffic comes from the test, spread over the instances the
pipeline runs (as a load balancer would).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from ooda.events import DeployDone, decode
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


async def cmdb_from_deploy_done(kit: Any, topic: str, app: str, versions: set[str]) -> None:
    """Keep the fake CMDB's SD groups of `app` equal to the instances of its last deploy-done.

    This is what the CMDB applies from the event; `versions` collects every version it listed.
    """
    consumer = AIOKafkaConsumer(
        topic,
        **kit.infra.kafka().options(),
        auto_offset_reset="earliest",
        group_id=unique("cmdb"),
        enable_auto_commit=False,
    )
    await consumer.start()
    newest = -1
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                for record in records:
                    done = decode(record.key, record.headers, record.value).data
                    if not isinstance(done, DeployDone) or done.app != app:
                        continue
                    if done.sequence <= newest:
                        continue
                    newest = done.sequence
                    ready = [i for i in done.instances if i.status == "ready"]
                    versions.update(i.version for i in ready)
                    kit.cmdb.targets[app] = [
                        {
                            "targets": [i.endpoint.removeprefix("http://")],
                            "labels": {
                                "app": app,
                                "instance": i.id,
                                "zone": i.zone,
                                "host": i.host,
                                "version": i.version,
                            },
                        }
                        for i in ready
                    ]
    finally:
        await consumer.stop()


async def send_traffic(pipeline: httpx.AsyncClient, app: str, per_second: float) -> None:
    """GET /work on the pipeline's running instances in turn, `per_second` requests a second."""
    routes: list[str] = []
    async with httpx.AsyncClient(trust_env=False, timeout=5.0) as client:
        for n in itertools.count():
            if n % max(1, int(per_second / 5)) == 0:  # the load balancer's view, 5 times a second
                response = await pipeline.get(f"/v1/apps/{app}/instances")
                if response.status_code == 200:
                    routes = [
                        i["endpoint"]
                        for i in response.json()
                        if i["status"] == "running" and i["endpoint"]
                    ]
            if routes:
                with contextlib.suppress(httpx.HTTPError):
                    await client.get(f"{routes[n % len(routes)]}/work")
            await asyncio.sleep(1.0 / per_second)


async def stop(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_ready_version_that_errs_is_rolled_back_by_the_monitor_gate(
    kit: Any, tmp_path: Path
) -> None:
    app = unique("shop")
    kit.cmdb.add_app(app, owner="shop-team", replicas=3)
    kit.cmdb.specs[app]["slo"] = {"availability": 0.99, "latency_p99_ms": 2000}
    prefix = unique("gate").replace("-", "") + "."
    await create_topics(kit.infra, prefix)
    port = free_port()
    monitor = ServiceProcess(
        "monitor",
        {
            "PATH": os.environ["PATH"],
            "MONITOR_DATABASE_URL": await create_database(kit.infra, "monitor"),
            "MONITOR_PORT": str(port),
            "MONITOR_CMDB_URL": kit.cmdb.url,
            "MONITOR_SCRAPE_INTERVAL_SECONDS": "1",
            **kafka_env(kit.infra.kafka("monitor")),
            "OODA_AUTH_SECRET": kit.infra.auth_secret,
            "OODA_TOPIC_PREFIX": prefix,
        },
        port,
        tmp_path / "monitor.log",
    )
    background: list[asyncio.Task[None]] = []
    try:
        monitor.start()
        await monitor.wait_ready()
        async with kit.pipeline(
            kit.infra,
            kit.cmdb,
            tmp_path / "data",
            monitor_url=monitor.url,
            gate_observe_seconds=8.0,
        ) as svc:
            try:
                listed: set[str] = set()
                background += [
                    asyncio.create_task(
                        cmdb_from_deploy_done(kit, svc.prefix + "deploy-done", app, listed)
                    ),
                    asyncio.create_task(send_traffic(svc.client, app, per_second=40)),
                ]
                team = svc.auth("ci", "team:shop-team")
                good = await kit.upload(svc.client, team, kit.artifacts.good, "shop.pyz")
                errs = await kit.upload(svc.client, team, kit.artifacts.errors, "shop-errors.pyz")

                async def deploy(version: str, artifact: str, size: int) -> dict[str, Any]:
                    created = await kit.request_deploy(
                        svc.client, team, app, version, artifact, {"size": size}, 3
                    )
                    return dict(
                        await kit.wait_for_change(svc.client, created, kit.finished, timeout=90)
                    )

                # A healthy release passes the gate: the monitor sees its traffic and no errors,
                # from instances the CMDB does not list until the change has ended.
                v1 = await deploy("v1", good, 3)
                assert v1["state"] == "succeeded", v1["reason"]
                async with httpx.AsyncClient(base_url=monitor.url, trust_env=False) as client:
                    answer = await client.get(
                        f"/v1/apps/{app}/metrics",
                        params={"metric": "request_rate", "start": v1["started_at"]},
                    )
                seen = answer.json()["points"]
                assert any(p["value"] for p in seen), "the monitor saw no traffic of v1"

                # v2 answers its readiness check, so its batch passes readiness; half its /work
                # requests fail, which lifts the application's error rate over 1 - 0.99.
                v2 = await deploy("v2", errs, 1)
                assert v2["state"] == "rolled_back", v2["reason"]
                assert "metric gate: error rate" in v2["reason"], v2["reason"]
                assert v2["rollout"]["started"] == 1  # the first batch was the last
                live = (await svc.client.get(f"/v1/apps/{app}/instances")).json()
                assert sorted(i["version"] for i in live) == ["v1", "v1", "v1"]
                assert {i["id"] for i in live} == kit.running_instance_ids(tmp_path / "data")
                # The monitor judged v2 from the announced instance: the CMDB never listed it.
                # The rollback withdrew the announcement: the monitor scrapes v1 alone, from SD.
                assert "v2" not in listed and "v1" in listed
                async with httpx.AsyncClient(base_url=monitor.url, trust_env=False) as client:
                    announced = await client.get(f"/v1/apps/{app}/announced-targets")
                    assert announced.json()["targets"] == [], announced.text
                    for _ in range(100):  # the monitor rescrapes without it at once
                        targets = (await client.get("/v1/targets", params={"app": app})).json()
                        seen = {(t["labels"].get("version"), t["source"]) for t in targets}
                        if seen == {("v1", "sd")} and len(targets) == 3:
                            break
                        await asyncio.sleep(0.1)
                    else:
                        raise AssertionError(f"the monitor's targets of {app}: {targets}")
            finally:
                await stop(background)
    finally:
        kit.cmdb.targets.pop(app, None)
        monitor.stop()
        await delete_topics(kit.infra, prefix)
