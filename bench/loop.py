"""Closed-loop speed: a load step, the `scale-decided` it causes, and the capacity it brings.

Starts the five services as real processes on fresh databases and a topic prefix (as
`tests/integration/conftest.py` does), then runs N trials. Each trial brings up a fresh pair of
applications side by side, identical except for `scaling.policy`: `predictive` and `hpa` (the
decision service's emulation of the Kubernetes HPA with its defaults). Both get a low load, then
the same step to a load two instances cannot serve. Per application it records:

- t_step: when the first second at the high rate starts being sent;
- decide: the Kafka timestamp of the first `scale-decided` of the app after t_step that asks for
  more replicas than it had, minus t_step;
- ready: when the CMDB first lists that decision's desired count of ready instances, minus t_step;
- serve: when the CMDB first lists enough ready instances to serve the step (high / capacity),
  minus t_step (a policy taking small first steps looks fast on `ready` but not on this).
A trial that does not get there within `--timeout` counts as missing (reported, not averaged).

A fresh pair per trial, because both policies hold a scale-in for minutes of wall time
(`predictive` the provisioning delay plus a step, at least 300 s; `hpa` 300 s): "back to low
and settle" would not fit the run.

Both apps share the monitor interval (one monitor) and get the same elastic policy. The live
`hpa` policy runs the Kubernetes controller as it is configured by default, whatever the monitor
interval: one sync per 15 s, on the mean of the last 15 s of the metric (metrics-server's default
resolution), on the load the instances serve (CPU follows served work: a saturated instance's
refused requests do not raise its utilisation), scale-up limited to max(+100%, +4 pods) per sync,
pods still starting counted as idle, scale-down stabilised over 300 s. `--hpa-sync-s` adds an
elastic scale-up cooldown to the hpa app (default 0: the policy itself keeps the 15 s loop);
`--hpa-interval 15` runs the hpa apps on a second platform whose monitor aggregates 15 s windows.

Usage: set -a; . .local/ooda.env; set +a
       .venv/bin/python bench/loop.py [--trials 4] [--interval 2] [--hpa-interval 15]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType

import httpx
from aiokafka import AIOKafkaConsumer

from ooda import scenario
from ooda.events import ScaleDecided
from ooda.events.envelope import decode
from ooda.testing import (
    REPO,
    SERVICES,
    Infra,
    ServiceProcess,
    create_topics,
    delete_topics,
    platform_processes,
    resolve_infra,
    unique,
)


def _module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


loadgen = _module("ooda_example_loadgen", REPO / "examples/loadgen.py")
# workload_processes / kill_workloads: the integration session's teardown of pipeline instances.
it_conftest = _module("ooda_it_conftest", REPO / "tests/integration/conftest.py")

CAPACITY_RPS = 20.0  # what one sample workload instance serves (it refuses the rest with 503)


@dataclass
class Running:
    infra: Infra
    prefix: str
    services: dict[str, ServiceProcess]
    logs: Path
    pipeline_data: Path

    def scenario(self) -> scenario.Platform:
        return scenario.Platform(
            self.infra.auth_secret, **{n: self.services[n].url for n in SERVICES}
        )


async def start_platform(infra: Infra, workdir: Path, interval_s: float) -> Running:
    """The five services as processes, as tests/integration/conftest.py starts them."""
    prefix = unique("bench").replace("-", "") + "."
    await create_topics(infra, prefix)
    logs, pipeline_data = workdir / "logs", workdir / "pipeline-data"
    logs.mkdir(parents=True)
    pipeline_data.mkdir(parents=True)
    services = await platform_processes(infra, prefix, logs, pipeline_data, interval_s)
    running = Running(infra, prefix, services, logs, pipeline_data)
    try:
        for proc in services.values():
            proc.start()
        for proc in services.values():
            await proc.wait_ready()
    except BaseException:
        await stop_platform(running)
        raise
    return running


async def stop_platform(running: Running) -> None:
    for proc in running.services.values():
        with contextlib.suppress(Exception):
            proc.stop()
    killed = it_conftest.kill_workloads(running.pipeline_data)
    await delete_topics(running.infra, running.prefix)
    survivors = it_conftest.workload_processes(running.pipeline_data)
    print(f"cleanup: services stopped, {len(killed)} workload processes killed", end="")
    print(f", survivors: {survivors or 'none'}")


async def set_elastic_policy(
    http: httpx.AsyncClient, running: Running, plan: scenario.AppPlan, scale_up_cooldown: float
) -> None:
    token = running.scenario().headers("ooda-bench", f"team:{plan.team}")
    response = await http.put(
        f"{running.services['elastic'].url}/v1/apps/{plan.app}/policy",
        json={
            "team": plan.team,
            "min_replicas": plan.min_replicas,
            "max_replicas": plan.max_replicas,
            "target_utilisation": plan.target_utilisation,
            "scale_up_cooldown": scale_up_cooldown,
            "scale_down_cooldown": 300,
            "max_step_up": plan.max_replicas,
            "max_step_down": 4,
            "max_actions_per_hour": 1000,
            "request": {"cpu_millis": 250, "memory_mib": 128},
        },
        headers=token,
    )
    if response.status_code not in (200, 201):
        raise RuntimeError(f"elastic policy of {plan.app}: {response.text[:300]}")


@dataclass
class Decided:
    at: float  # Kafka record timestamp, s since the epoch
    desired: int
    current: int
    reason: str


class DecisionLog:
    """Every `scale-decided` on the prefixed topic, read live, by application."""

    def __init__(self, running: Running) -> None:
        self.running = running
        self.by_app: dict[str, list[Decided]] = {}
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(
            self.running.prefix + "scale-decided",
            **self.running.infra.kafka().options(),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=unique("bench-loop"),
        )
        await self.consumer.start()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for r in self.consumer:
            event = decode(r.key, r.headers, r.value)
            data = event.data
            if not isinstance(data, ScaleDecided):
                continue
            self.by_app.setdefault(event.subject, []).append(
                Decided(
                    r.timestamp / 1000, data.desired_replicas, data.current_replicas, data.reason
                )
            )

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.consumer.stop()


@dataclass
class Driven:
    """Load on one app at a rate the bench changes; when each rate first started being sent."""

    running: Running
    app: str
    rate: float = 0.0
    started: dict[float, float] = field(default_factory=dict)
    ready: list[tuple[float, int]] = field(default_factory=list)  # (time, ready in the CMDB)

    async def drive(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=5.0) as cmdb:
            endpoints = loadgen.cmdb_endpoints(cmdb, self.running.services["cmdb"].url, self.app)
            gen = loadgen.LoadGenerator(endpoints, timeout_s=1.0)
            while not stop.is_set():
                rate = self.rate
                self.started.setdefault(rate, time.time())
                await gen.replay([1.0], rate, 1.0)

    async def sample(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=5.0) as http:
            while not stop.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    found = await scenario.ready_instances(http, self.running.scenario(), self.app)
                    self.ready.append((time.time(), len(found)))
                await asyncio.sleep(0.2)


@dataclass
class Outcome:
    app: str
    policy: str
    decide_s: float | None
    ready_s: float | None
    desired: int | None
    ready_before: int
    serve_s: float | None  # ready instances enough to serve the step (high / capacity)
    decisions: list[str]


def outcome(driven: Driven, policy: str, log: DecisionLog, high: float) -> Outcome:
    t_step = driven.started.get(high)
    before = [n for t, n in driven.ready if t_step is None or t < t_step]
    base = before[-1] if before else 0
    if t_step is None:
        return Outcome(driven.app, policy, None, None, None, base, None, [])
    after = [d for d in log.by_app.get(driven.app, []) if d.at >= t_step]
    trail = [f"+{d.at - t_step:.1f}s {d.current}->{d.desired}" for d in after]
    needed = math.ceil(high / CAPACITY_RPS)
    serve_at = next((t for t, n in driven.ready if t >= t_step and n >= needed), None)
    serve_s = None if serve_at is None else serve_at - t_step
    first = next((d for d in after if d.desired > d.current), None)
    if first is None:
        return Outcome(driven.app, policy, None, None, None, base, serve_s, trail)
    ready_at = next((t for t, n in driven.ready if t >= first.at and n >= first.desired), None)
    return Outcome(
        driven.app,
        policy,
        first.at - t_step,
        None if ready_at is None else ready_at - t_step,
        first.desired,
        base,
        serve_s,
        trail,
    )


@dataclass
class Side:
    """Where one policy's apps run: a platform, its decision log and its uploaded workload."""

    running: Running
    log: DecisionLog
    artifact: str = ""


async def trial(
    n: int, sides: dict[str, Side], http: httpx.AsyncClient, args: argparse.Namespace
) -> list[Outcome]:
    plans = {
        policy: scenario.AppPlan(
            app=unique(f"t{n}{policy[:4]}"),
            min_replicas=2,
            max_replicas=args.max_replicas,
            desired=2,
            capacity_rps=CAPACITY_RPS,
            policy=policy,
        )
        for policy in ("predictive", "hpa")
    }
    for p, plan in plans.items():
        platform = sides[p].running.scenario()
        await scenario.declare_app(http, platform, plan, sides[p].artifact)
    for p, plan in plans.items():
        platform = sides[p].running.scenario()
        await scenario.wait_for_instances(http, platform, plan.app, plan.desired, 120)
        cooldown = args.hpa_sync_s if plan.policy == "hpa" else 0
        await set_elastic_policy(http, sides[p].running, plan, cooldown)
    driven = {p: Driven(sides[p].running, plan.app, rate=args.low) for p, plan in plans.items()}
    stop = asyncio.Event()
    tasks = [asyncio.create_task(d.drive(stop)) for d in driven.values()]
    tasks += [asyncio.create_task(d.sample(stop)) for d in driven.values()]
    try:
        await asyncio.sleep(args.warmup)
        for d in driven.values():
            d.rate = args.high
        deadline = time.time() + args.timeout
        while time.time() < deadline:
            await asyncio.sleep(1.0)
            results = [outcome(d, p, sides[p].log, args.high) for p, d in driven.items()]
            if all(r.ready_s is not None and r.serve_s is not None for r in results):
                break
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    results = [outcome(d, p, sides[p].log, args.high) for p, d in driven.items()]
    for r in results:
        t_step = driven[r.policy].started.get(args.high)
        why = await explain(http, sides[r.policy].running, r.app, t_step)
        print(
            f"trial {n} {r.policy:>10} {r.app}: ready before {r.ready_before}, "
            f"decide {fmt(r.decide_s)}, ready {r.desired} at {fmt(r.ready_s)}, "
            f"serve ({math.ceil(args.high / CAPACITY_RPS)} ready) {fmt(r.serve_s)}; "
            f"decisions {r.decisions[:4]}\n    first windows after the step: {why}",
            flush=True,
        )
    return results


async def explain(
    http: httpx.AsyncClient, running: Running, app: str, t_step: float | None
) -> list[str]:
    """The decision service's own record of its first windows after the step (why it waited)."""
    if t_step is None:
        return []
    response = await http.get(
        f"{running.services['decision'].url}/v1/apps/{app}/decisions", params={"limit": 200}
    )
    if response.status_code != 200:
        return [f"decisions: {response.status_code}"]
    rows = [
        d for d in response.json() if datetime.fromisoformat(d["window_end"]).timestamp() >= t_step
    ]
    rows.sort(key=lambda d: d["window_end"])
    out = []
    for d in rows[:3]:
        i = d["inputs"]
        cap = d["capacity_per_instance"]
        out.append(
            f"load={i.get('last_load', float('nan')):.0f} ready={i.get('ready')} "
            f"cap/inst={cap if cap is None else round(cap, 1)} -> {d['desired_replicas']} "
            f"({d['reason']})"
        )
    return out


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (with under 20 trials, p95 is the slowest one)."""
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


def summary(
    all_results: list[Outcome], args: argparse.Namespace, intervals: dict[str, float]
) -> None:
    print(
        f"\n== {args.trials} trials, monitor interval {intervals}s, "
        f"hpa app's elastic scale-up cooldown {args.hpa_sync_s}s, "
        f"load {args.low} -> {args.high} req/s, {CAPACITY_RPS} req/s per instance =="
    )
    timeout = args.timeout

    def show(v: float) -> str:
        return f"{v:6.1f}s" if math.isfinite(v) else f">{timeout:.0f}s".rjust(7)

    # A trial that never got there within the timeout counts as +inf (censored at the timeout):
    # percentiles are nearest-rank over all trials, so a miss is never averaged away.
    stats: dict[str, dict[str, tuple[float, float]]] = {}
    for policy in ("predictive", "hpa"):
        mine = [r for r in all_results if r.policy == policy]
        row: dict[str, tuple[float, float]] = {}
        for metric in ("decide_s", "ready_s", "serve_s"):
            values = [math.inf if (v := getattr(r, metric)) is None else v for r in mine]
            missed = sum(1 for v in values if not math.isfinite(v))
            row[metric] = (pct(values, 0.5), pct(values, 0.95))
            note = f"  ({missed} of {len(mine)} trials not within {timeout:.0f}s)" if missed else ""
            print(
                f"{policy:>10} {metric[:-2]:>6}: p50 {show(row[metric][0])}  "
                f"p95 {show(row[metric][1])}{note}"
            )
        stats[policy] = row

    def ratio(h: float, p: float) -> str:
        if not math.isfinite(p):
            return "n/a"
        return f"{h / p:.2f}x" if math.isfinite(h) else f">{timeout / p:.1f}x"

    for metric in ("decide_s", "ready_s", "serve_s"):
        p, h = stats["predictive"][metric], stats["hpa"][metric]
        print(
            f"ratio hpa/predictive {metric[:-2]:>6}: p50 {ratio(h[0], p[0])}  "
            f"p95 {ratio(h[1], p[1])}"
        )
    ok = stats["predictive"]["decide_s"][1] <= 2 * args.interval
    verdict = "met" if ok else "missed"
    print(f"aim predictive decide p95 <= 2 intervals ({2 * args.interval:.0f}s): {verdict}")
    for metric in ("ready_s", "serve_s"):
        p, h = stats["predictive"][metric], stats["hpa"][metric]
        verdict = "met" if math.isfinite(p[0]) and h[0] >= 5 * p[0] else "missed"
        print(f"aim {metric[:-2]} >= 5x sooner than hpa (p50): {verdict}")


async def main(args: argparse.Namespace) -> None:
    infra = resolve_infra()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="ooda-bench-loop-") as tmp:
        workdir = Path(tmp)
        workload = scenario.build_workload(workdir / "workload.pyz")
        intervals = {"predictive": args.interval, "hpa": args.hpa_interval or args.interval}
        platforms: list[Side] = []
        sides: dict[str, Side] = {}
        try:
            for policy, interval in intervals.items():
                if policy == "hpa" and interval == args.interval:
                    sides[policy] = sides["predictive"]  # one platform for both apps
                    continue
                (workdir / policy).mkdir()
                running = await start_platform(infra, workdir / policy, interval)
                side = Side(running, DecisionLog(running))
                platforms.append(side)
                sides[policy] = side
                await side.log.start()
                print(f"platform for {policy}: monitor interval {interval}s, logs {running.logs}")
            async with httpx.AsyncClient(timeout=30.0) as http:
                for side in platforms:
                    platform = side.running.scenario()
                    await scenario.register_topology(http, platform)
                    side.artifact = await scenario.upload_artifact(http, platform, workload)
                all_results: list[Outcome] = []
                for n in range(1, args.trials + 1):
                    all_results += await trial(n, sides, http, args)
            summary(all_results, args, intervals)
        finally:
            for side in platforms:
                with contextlib.suppress(Exception):
                    await side.log.stop()
                await stop_platform(side.running)
    print(f"total {time.time() - started:.0f}s")


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--interval", type=float, default=2.0, help="monitor scrape interval, s")
    p.add_argument("--low", type=float, default=8.0, help="req/s before the step")
    p.add_argument("--high", type=float, default=60.0, help="req/s after the step")
    p.add_argument("--warmup", type=float, default=12.0, help="seconds at the low rate")
    p.add_argument("--timeout", type=float, default=75.0, help="seconds to wait after the step")
    p.add_argument("--max-replicas", type=int, default=8)
    p.add_argument(
        "--hpa-interval",
        type=float,
        default=None,
        help="run the hpa apps on a second platform with this monitor interval (e.g. 15: "
        "metrics-server resolution and one HPA sync per 15 s window); default: same platform",
    )
    p.add_argument(
        "--hpa-sync-s", type=float, default=0.0, help="extra elastic scale-up cooldown, hpa app"
    )
    return p.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
