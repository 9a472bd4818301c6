"""Helpers of the cross-service loop tests: load, the event log, what really runs."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer

from ooda import scenario
from ooda.events.envelope import decode
from ooda.telemetry import trace_id_of
from ooda.testing import REPO, unique

from .conftest import Platform

_spec = importlib.util.spec_from_file_location("ooda_example_loadgen", REPO / "examples/loadgen.py")
assert _spec is not None and _spec.loader is not None
loadgen = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = loadgen  # dataclasses look their module up
_spec.loader.exec_module(loadgen)
LoadGenerator, StepStats, cmdb_endpoints = (
    loadgen.LoadGenerator,
    loadgen.StepStats,
    loadgen.cmdb_endpoints,
)

CAPACITY_RPS = 20.0  # what one workload instance serves (it refuses the rest with 503)
HIGH_RPS = 100.0  # five instances' worth: two cannot serve it
LOW_RPS = 8.0  # well within the minimum of two instances
SCALE_DOWN_COOLDOWN_S = 4


def loop_plan(app: str) -> scenario.AppPlan:
    # `seasonal-naive` without a day of history sizes for the last window's load, so it scales
    # in as soon as the load falls; the `predictive` and `hpa` policies hold a scale-in for their
    # stabilisation window (predictive: the provisioning delay plus a step, at least 300 s; hpa:
    # 300 s; unless the spec's `scale_in_window_s` says otherwise), and after a collapse like this
    # test's step down `predictive`'s outage guard keeps capacity for a while.
    return scenario.AppPlan(
        app=app,
        min_replicas=2,
        max_replicas=6,
        desired=2,
        capacity_rps=CAPACITY_RPS,
        policy="seasonal-naive",
    )


async def set_fast_policy(
    http: httpx.AsyncClient, platform: Platform, plan: scenario.AppPlan
) -> None:
    """Elastic may act on every decision: no scale-up cooldown, a short scale-down one."""
    response = await http.put(
        f"{platform.url('elastic')}/v1/apps/{plan.app}/policy",
        json={
            "team": plan.team,
            "min_replicas": plan.min_replicas,
            "max_replicas": plan.max_replicas,
            "target_utilisation": plan.target_utilisation,
            "scale_up_cooldown": 0,
            "scale_down_cooldown": SCALE_DOWN_COOLDOWN_S,
            "max_step_up": 4,
            "max_step_down": 4,
            "max_actions_per_hour": 1000,
            "request": {"cpu_millis": 250, "memory_mib": 128},
        },
        headers=platform.token("ooda-test", f"team:{plan.team}"),
    )
    assert response.status_code in (200, 201), response.text


LOOP_TOPICS = (
    "metric-observed",
    "scale-decided",
    "change-requested",
    "deploy-done",
    "cmdb-changed",
)


@dataclass
class Record:
    """One event read back from a topic, with the trace id of its `traceparent`."""

    topic: str
    id: str
    subject: str
    data: dict[str, Any]
    trace_id: str | None
    time: datetime


async def read_events(platform: Platform, topics: tuple[str, ...] = LOOP_TOPICS) -> list[Record]:
    """Every event on the platform's prefixed `topics`, from the beginning, as it stands now."""
    consumer = AIOKafkaConsumer(
        *(platform.prefix + t for t in topics),
        **platform.infra.kafka().options(),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=unique("loop-reader"),
    )
    await consumer.start()
    out: list[Record] = []
    try:
        idle = 0
        async with asyncio.timeout(30):
            while idle < 3:
                batch = await consumer.getmany(timeout_ms=500)
                idle = 0 if any(batch.values()) else idle + 1
                for records in batch.values():
                    for r in records:
                        event = decode(r.key, r.headers, r.value)
                        out.append(
                            Record(
                                r.topic.removeprefix(platform.prefix),
                                event.id,
                                event.subject,
                                json.loads(r.value or b"{}"),
                                trace_id_of(event.traceparent),
                                event.time,
                            )
                        )
    finally:
        await consumer.stop()
    return out


@dataclass
class Load:
    """Live HTTP load on an application's ready instances (as the CMDB lists them)."""

    platform: Platform
    app: str
    steps: list[Any] = field(default_factory=list)

    async def run_until(
        self,
        rate: float,
        done: Callable[[], Awaitable[bool]],
        timeout_s: float,
        step_s: float = 2.0,
    ) -> float:
        """Offer `rate` req/s until `done()` holds; returns the seconds it took (fails on timeout)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with httpx.AsyncClient(timeout=5.0) as cmdb:
            gen = LoadGenerator(cmdb_endpoints(cmdb, self.platform.url("cmdb"), self.app))
            while not await done():
                elapsed = loop.time() - started
                if elapsed >= timeout_s:
                    raise AssertionError(
                        f"{self.app}: condition not reached after {elapsed:.0f}s at {rate} "
                        f"req/s; last steps {[s.summary() for s in self.steps[-3:]]}; logs in "
                        f"{self.platform.logs}\n{await diagnose(cmdb, self.platform, self.app)}"
                    )
                self.steps += await gen.replay([rate], rate, step_s)
        return loop.time() - started


async def cmdb_instances(http: httpx.AsyncClient, platform: Platform, app: str) -> list[dict]:
    """The application's instances as the CMDB records them (every status)."""
    response = await http.get(f"{platform.url('cmdb')}/v1/instances", params={"app": app})
    response.raise_for_status()
    return list(response.json()["items"])


async def ready_endpoints(http: httpx.AsyncClient, platform: Platform, app: str) -> set[str]:
    return {
        i["endpoint"] for i in await cmdb_instances(http, platform, app) if i["status"] == "ready"
    }


def instance_records(platform: Platform, app: str) -> list[dict[str, Any]]:
    """The local driver's records (`instances/<id>/instance.json`) of `app` whose process lives."""
    found = []
    for path in sorted((platform.pipeline_data / "instances").glob("*/instance.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("app") == app and runs(record["pid"], record["id"]):
            found.append(record)
    return found


def runs(pid: int, instance_id: str) -> bool:
    """Whether process `pid` is alive and is instance `instance_id`."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"WORKLOAD_INSTANCE={instance_id}".encode() in environ


async def live_endpoints(http: httpx.AsyncClient, platform: Platform, app: str) -> set[str]:
    """host:port of every process of `app` that really runs and answers /healthz as itself."""
    live = set()
    for record in instance_records(platform, app):
        endpoint = f"127.0.0.1:{record['port']}"
        try:
            reply = await http.get(f"http://{endpoint}/healthz", timeout=2.0)
        except httpx.HTTPError:
            continue
        if reply.status_code == 200 and reply.json().get("instance") == record["id"]:
            live.add(endpoint)
    return live


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout_s: float, interval_s: float = 0.5
) -> bool:
    """Whether `check()` holds within `timeout_s` (the caller asserts, with its evidence)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if await check():
            return True
        await asyncio.sleep(interval_s)
    return await check()


def kill_pid(pid: int) -> None:
    """SIGKILL one process (an instance's crash)."""
    os.kill(pid, 9)


async def changes_of(http: httpx.AsyncClient, platform: Platform, app: str) -> list[dict]:
    """The pipeline's changes of `app`, newest first."""
    response = await http.get(
        f"{platform.url('pipeline')}/v1/changes", params={"app": app, "limit": 200}
    )
    response.raise_for_status()
    return list(response.json()["items"])


async def diagnose(http: httpx.AsyncClient, platform: Platform, app: str) -> str:
    """What the loop did lately for `app`, for a failure message: decisions, elastic's outcomes,
    the pipeline's changes and the CMDB's instances (as far as the services answer)."""
    lines = []

    async def read(service: str, path: str, limit: int) -> list[dict[str, Any]]:
        response = await http.get(f"{platform.url(service)}{path}", params={"limit": limit})
        response.raise_for_status()
        return list(response.json())

    try:
        for d in await read("decision", f"/v1/apps/{app}/decisions", 8):
            lines.append(
                f"decision {d['window_end']} {d['current_replicas']}->{d['desired_replicas']} "
                f"published={d['published']} {d['reason']}"
            )
        lines += [f"elastic {o}" for o in await read("elastic", f"/v1/apps/{app}/outcomes", 6)]
        for c in (await changes_of(http, platform, app))[:6]:
            lines.append(f"change {c['kind']} {c['state']} created {c['created_at']}")
        lines.append(f"cmdb instances {await cmdb_instances(http, platform, app)}")
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        lines.append(f"(could not read further: {exc!r})")
    return "\n".join(lines)
