"""The closed-loop demo against a running platform (`make up` first).

It registers zones, a pool and hosts and the sample application through the public APIs, deploys
it, gives the decision service the days of the trace before the slice as history (posted to the
monitor with their original timestamps, as any agent would), then replays the slice as live HTTP
load and lets the platform scale the application by itself. At the end it writes a report into
`reports/demo-<timestamp>/` and scales the application to zero (unless `--keep`).

    .venv/bin/python examples/demo            # mongo-01, a 4-hour morning peak in 6 min
    .venv/bin/python examples/demo --trace ingress-04 --start 7000 --minutes 240 --keep
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from loadgen import LoadGenerator, StepStats, cmdb_endpoints

from decision.models.trace import load_trace
from demo.report import (
    DEFAULT_MINUTES,
    DEFAULT_SECONDS_PER_MINUTE,
    DEFAULT_START,
    DEFAULT_TRACE,
    DemoError,
    RunData,
    StepRow,
    Window,
    compress_history,
    find_traces_dir,
    oracle,
    resolve_trace,
    slice_trace,
    write_report,
)
from ooda.bus import KafkaConnection
from ooda.scenario import (
    REPO,
    AppPlan,
    Platform,
    build_workload,
    declare_app,
    ready_instances,
    register_topology,
    spec_body,
    upload_artifact,
    wait_for_instances,
)
from ooda.testing import read_env_file

TOPICS = (
    "metric-observed",
    "scale-decided",
    "change-requested",
    "deploy-done",
    "cmdb-changed",
    "change-progressed",
    "alert-raised",
)
FINISHED = {"succeeded", "failed", "rolled_back", "aborted"}


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def platform_from_env() -> tuple[Platform, dict[str, str]]:
    local = Path(os.environ.get("OODA_LOCAL_DIR", REPO / ".local"))
    env_file = local / "ooda.env"
    if not env_file.is_file():
        raise DemoError(f"{env_file} is missing: start the platform with `make up`")
    env = read_env_file(env_file)

    def url(name: str, port: int) -> str:
        return f"http://127.0.0.1:{os.environ.get(f'{name}_PORT', str(port))}"

    platform = Platform(
        auth_secret=env["OODA_AUTH_SECRET"],
        cmdb=url("CMDB", 8001),
        pipeline=url("PIPELINE", 8002),
        monitor=url("MONITOR", 8003),
        elastic=url("ELASTIC", 8004),
        decision=url("DECISION", 8005),
    )
    return platform, env


async def check_ready(client: httpx.AsyncClient, platform: Platform) -> None:
    for name in ("cmdb", "pipeline", "monitor", "elastic", "decision"):
        base = getattr(platform, name)
        try:
            response = await client.get(f"{base}/readyz", timeout=5)
        except httpx.HTTPError as exc:
            raise DemoError(f"{name} at {base} does not answer ({exc!r}): run `make up`") from exc
        if response.status_code != 200:
            raise DemoError(f"{name} at {base} is not ready: {response.text[:300]}")


async def end_offsets(kafka: KafkaConnection) -> dict[str, int]:
    """Records ever written per domain topic and its dead-letter topic (sum of end offsets)."""
    consumer = AIOKafkaConsumer(**kafka.options(), enable_auto_commit=False)
    await consumer.start()
    try:
        out = {}
        for topic in (*TOPICS, *(f"{t}.dlq" for t in TOPICS)):
            partitions = consumer.partitions_for_topic(topic)
            if partitions is None:
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            offsets = await consumer.end_offsets(tps) if tps else {}
            out[topic] = int(sum(offsets.values()))
        return out
    finally:
        await consumer.stop()


async def post_history(
    client: httpx.AsyncClient,
    platform: Platform,
    plan: AppPlan,
    history: list[Window],
    scale: float,
    concurrency: int = 16,
) -> int:
    """Post the history windows to the monitor, oldest first, `concurrency` at a time."""
    headers = platform.headers("demo-history-agent", "metrics:push", f"team:{plan.team}")
    gate = asyncio.Semaphore(concurrency)

    async def one(window_start: float, window_end: float, mean: float) -> None:
        load = mean * scale
        ready = min(
            plan.max_replicas,
            max(plan.min_replicas, oracle(load, plan.capacity_rps, plan.target_utilisation)),
        )
        body = {
            "window_start": datetime.fromtimestamp(window_start, UTC).isoformat(),
            "window_end": datetime.fromtimestamp(window_end, UTC).isoformat(),
            "values": {"request_rate": load, "ready_instances": ready},
            "instance_count": ready,
        }
        async with gate:
            response = await client.post(
                f"{platform.monitor}/v1/apps/{plan.app}/observations", json=body, headers=headers
            )
        if response.status_code >= 400:
            raise DemoError(
                f"history window rejected: {response.status_code} {response.text[:300]}"
            )

    await asyncio.gather(*(one(w.start_s, w.end_s, w.mean) for w in history))
    return len(history)


async def history_arrival(
    client: httpx.AsyncClient,
    platform: Platform,
    app: str,
    before_s: float,
    expected: int,
    timeout_s: float = 180.0,
) -> tuple[int, int]:
    """Wait until the decision service holds the history; returns (stored, stepped).

    Stepped = windows the live model decided on (one decision row each, never published: they are
    older than the engine's fresh window). A window that arrives after a newer one is stored but
    not stepped, because the engine decides in event-time order.
    """
    stored = stepped = 0
    unchanged = 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            load = (
                await client.get(f"{platform.decision}/v1/apps/{app}/load", params={"limit": 10000})
            ).json()
            decisions = (
                await client.get(
                    f"{platform.decision}/v1/apps/{app}/decisions", params={"limit": 10000}
                )
            ).json()
        except httpx.HTTPError as exc:  # a busy decision service: ask again
            print(f"decision service did not answer ({exc!r}); asking again")
            await asyncio.sleep(1.0)
            continue
        now_stored = sum(1 for p in load if (ts := _ts(p.get("window_end"))) and ts <= before_s)
        now_stepped = sum(
            1 for d in decisions if (ts := _ts(d.get("window_end"))) and ts <= before_s
        )
        # Done when every window is stored and the model's count has settled (a window that
        # arrived after a newer one is stored but never stepped).
        settled = (now_stored, now_stepped) == (stored, stepped)
        unchanged = unchanged + 1 if settled else 0
        stored, stepped = now_stored, now_stepped
        if stored >= expected and (stepped >= stored or unchanged >= 3):
            break
        await asyncio.sleep(1.0)
    return stored, stepped


def _ts(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Watch:
    """Polls the platform for the app's published decisions and changes while load runs."""

    def __init__(self, client: httpx.AsyncClient, platform: Platform, app: str) -> None:
        self.client, self.platform, self.app = client, platform, app
        self.decisions: list[dict[str, Any]] = []
        self.changes: list[dict[str, Any]] = []

    async def poll_once(self) -> None:
        try:
            d = await self.client.get(
                f"{self.platform.decision}/v1/apps/{self.app}/decisions",
                params={"published": "true", "limit": 10000},
            )
            c = await self.client.get(
                f"{self.platform.pipeline}/v1/changes", params={"app": self.app, "limit": 1000}
            )
            if d.status_code == 200:
                self.decisions = d.json()
            if c.status_code == 200:
                self.changes = c.json()["items"]
        except httpx.HTTPError:
            pass  # keep the last view; the next poll tries again

    async def run(self) -> None:
        while True:
            await self.poll_once()
            await asyncio.sleep(2.0)

    def active(self) -> int:
        return sum(1 for c in self.changes if c.get("state") not in FINISHED)

    def last_desired(self) -> str:
        return str(self.decisions[-1]["desired_replicas"]) if self.decisions else "-"


async def compress_policy(
    client: httpx.AsyncClient, platform: Platform, plan: AppPlan, ratio: float
) -> dict[str, Any]:
    """Set the app's elastic policy with the default cooldowns and action rate (1 min up, 5 min
    down, 12 actions an hour) compressed like the trace, so the replay meets them as a real day
    would; never below one monitor window (5 s) or two for scale-down."""
    body = {
        "team": plan.team,
        "min_replicas": plan.min_replicas,
        "max_replicas": plan.max_replicas,
        "target_utilisation": plan.target_utilisation,
        "scale_up_cooldown": max(5.0, 60.0 / ratio),
        "scale_down_cooldown": max(10.0, 300.0 / ratio),
        "max_step_up": 4,
        "max_step_down": 2,
        "max_actions_per_hour": max(12, min(3600, round(12 * ratio))),
        "request": {"cpu_millis": 250, "memory_mib": 128},
    }
    response = await client.put(
        f"{platform.elastic}/v1/apps/{plan.app}/policy",
        json=body,
        headers=platform.headers("ooda-demo", f"team:{plan.team}"),
    )
    if response.status_code >= 400:
        raise DemoError(f"elastic policy: {response.status_code} {response.text[:300]}")
    return dict(response.json()["policy"])


async def hold_load(
    platform: Platform, app: str, rps: float, step_seconds: float, done: asyncio.Event
) -> None:
    """Offer a constant `rps` to the app's instances until `done` is set."""
    async with httpx.AsyncClient(timeout=5.0) as cmdb:
        generator = LoadGenerator(cmdb_endpoints(cmdb, platform.cmdb, app))
        while not done.is_set():
            await generator.replay([1.0], rps, step_seconds)


async def scale_to_zero(
    client: httpx.AsyncClient, platform: Platform, plan: AppPlan, sha: str
) -> None:
    zero = AppPlan(**{**plan.__dict__, "min_replicas": 0, "desired": 0})
    owner = platform.headers("ooda-demo", f"team:{plan.team}")
    response = await client.put(
        f"{platform.cmdb}/v1/apps/{plan.app}/spec", json=spec_body(zero, sha), headers=owner
    )
    if response.status_code >= 400:
        print(f"the CMDB refused the spec with 0 replicas: {response.status_code} {response.text}")
        return
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if not await ready_instances(client, platform, plan.app):
            print(f"{plan.app} scaled to 0 replicas: no workload process is left")
            return
        await asyncio.sleep(1.0)
    print(f"{plan.app} still lists instances after 90 s: see `GET {platform.cmdb}/v1/instances`")


async def demo(args: argparse.Namespace) -> int:
    wall_start = time.monotonic()
    platform, env = platform_from_env()
    traces = find_traces_dir(REPO, args.traces_dir)
    trace = load_trace(resolve_trace(traces, args.trace))
    ratio = 60.0 / args.seconds_per_minute  # trace seconds per live second
    original = args.history_time == "original"
    history_window_s = 300.0 if original else args.window_seconds * ratio
    piece = slice_trace(trace, args.start, args.minutes, args.history_days, history_window_s)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    app = args.app or f"demo-{stamp.lower()}"
    target_util = 0.6
    peak_rps = args.peak_instances * args.capacity * target_util
    scale = peak_rps / piece.peak
    step_seconds = args.seconds_per_minute * piece.step_s / 60
    first_load = next((v * scale for v in piece.values if math.isfinite(v)), 0.0)
    plan = AppPlan(
        app=app,
        min_replicas=2,
        max_replicas=args.max_replicas,
        # Deployed for the load the slice begins with, as an operator would size it.
        desired=min(args.max_replicas, max(2, oracle(first_load, args.capacity, target_util))),
        capacity_rps=args.capacity,
        target_utilisation=target_util,
        policy=args.policy,
        # The spec's scale-in window (15 min, as the demo declares it), compressed like the load,
        # so a fall in the trace is met by a scale-in as on a real day; real time with
        # --platform-cooldowns.
        scale_in_window_s=(
            None if args.platform_cooldowns else max(2 * args.window_seconds, 900.0 / ratio)
        ),
        # The load runs `ratio` times faster than the trace: its day lasts 86400 / ratio seconds
        # (with the compressed history; history at its original timestamps keeps real days).
        season_s=None if original else 86400.0 / ratio,
    )
    kafka = KafkaConnection.from_env(env)  # the admin principal of the env file
    out_dir = REPO / "reports" / f"demo-{stamp}"

    async with httpx.AsyncClient(timeout=30.0) as client:
        await check_ready(client, platform)
        before = await end_offsets(kafka)
        say(
            f"App {app}: {trace.name} steps {piece.start_index}.."
            f"{piece.start_index + len(piece.values)} "
            f"({datetime.fromtimestamp(piece.start_s, UTC):%Y-%m-%d %H:%M} UTC), peak scaled to "
            f"{peak_rps:.0f} req/s = {args.peak_instances} x {args.capacity:g} req/s "
            f"x U* {target_util}"
        )
        say("Registering region, pool, zones and hosts in the CMDB")
        hosts = await register_topology(client, platform)
        print(f"{len(hosts)} hosts: {', '.join(hosts)}")
        say("Building the sample workload and uploading it to the pipeline")
        with tempfile.TemporaryDirectory() as tmp:
            sha = await upload_artifact(
                client, platform, build_workload(Path(tmp) / "workload.pyz"), plan.team
            )
        print(f"artifact sha256:{sha[:16]}...")
        say(f"Declaring {app} and its spec (the CMDB requests the deployment)")
        await declare_app(client, platform, plan, sha)
        if not args.platform_cooldowns:
            policy = await compress_policy(client, platform, plan, ratio)
            print(
                f"elastic policy, time-compressed like the load: scale-up cooldown "
                f"{policy['scale_up_cooldown']}, scale-down cooldown "
                f"{policy['scale_down_cooldown']}, {policy['max_actions_per_hour']} actions/hour; "
                f"the spec's scale-in window {plan.scale_in_window_s:g}s"
            )
        if plan.season_s is not None:
            print(f"the spec's season: a trace day lasts {plan.season_s:g}s of the replay")
        if original:
            history, history_end = piece.history, piece.start_s
            how = "5-minute means at their original timestamps"
        else:
            # On the live clock, compressed like the replay, ending just before now: older than
            # the decision service's fresh windows (never published), and on the same 5-s grid
            # as the live windows that follow.
            history_end = time.time() - 6 * args.window_seconds
            history = compress_history(piece.history, history_end, ratio)
            how = (
                f"{history_window_s:g}-s trace means, time-compressed like the replay into "
                f"{args.window_seconds:g}-s windows ending just before now"
            )
        say(
            f"Warm start: posting {len(history)} windows of history ({args.history_days:g} days "
            f"before the slice, {how}) to the monitor"
        )
        t0 = time.monotonic()
        posting = asyncio.create_task(post_history(client, platform, plan, history, scale))
        instances = await wait_for_instances(client, platform, app, plan.desired)
        print(f"{len(instances)} instances ready: {', '.join(i['endpoint'] for i in instances)}")
        # Hold the slice's first rate while the history lands, so the live windows the monitor
        # observes meanwhile show the load the replay starts from (an idle app would be scaled in).
        warmed = asyncio.Event()
        preroll = asyncio.create_task(hold_load(platform, app, first_load, step_seconds, warmed))
        try:
            posted = await posting
            print(f"posted {posted} windows in {time.monotonic() - t0:.1f}s")
            stored, stepped = await history_arrival(
                client, platform, app, history_end + 1e-3, posted
            )
        finally:
            warmed.set()
            await preroll
        print(
            f"after {time.monotonic() - t0:.1f}s the decision service holds {stored} history "
            f"windows; its model stepped through {stepped} (all older than its fresh windows, "
            "so none is published)"
        )

        say(
            f"Replaying {len(piece.values)} trace steps, {step_seconds:g}s each "
            f"(~{len(piece.values) * step_seconds / 60:.1f} min); the platform scales by itself"
        )
        watch = Watch(client, platform, app)
        watcher = asyncio.create_task(watch.run())
        seen: list[tuple[StepStats, float, int, int]] = []
        started = time.time()

        def on_step(s: StepStats) -> None:
            t = time.time() - started - step_seconds
            served = s.ok / step_seconds  # so far: late answers are counted when they come
            seen.append((s, max(t, 0.0), len(watch.decisions), len(watch.changes)))
            need = oracle(s.target_rps, args.capacity, target_util)
            print(
                f"[{t + step_seconds:5.0f}s] step {s.step + 1:3d}/{len(piece.values)} "
                f"load {s.target_rps:6.1f} served {served:6.1f} req/s | ready {s.instances:2d} "
                f"(cap {s.instances * args.capacity:4.0f}, oracle {need}) | decisions "
                f"{len(watch.decisions)} (last -> {watch.last_desired()}) | changes "
                f"{len(watch.changes)} ({watch.active()} active) | failed {s.failed} slow {s.slow}",
                flush=True,
            )

        async with httpx.AsyncClient(timeout=5.0) as cmdb:
            generator = LoadGenerator(cmdb_endpoints(cmdb, platform.cmdb, app))
            await generator.replay(piece.values, peak_rps, step_seconds, on_step=on_step)

        # Requests finish after their step was printed: take the final counts now.
        rows = [
            StepRow(
                step=s.step,
                t_s=t,
                trace_value=s.trace_value,
                offered_rps=s.target_rps,
                served_rps=s.ok / step_seconds,
                failed=s.failed,
                slow=s.slow,
                dropped=s.dropped,
                ready=s.instances,
                decisions=decisions,
                changes=changes,
            )
            for s, t, decisions, changes in seen
        ]
        say("Load done; waiting for changes in flight to finish")
        deadline = time.monotonic() + 30
        await watch.poll_once()
        while watch.active() and time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            await watch.poll_once()
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await watch.poll_once()
        after = await end_offsets(kafka)

        run = RunData(
            app=app,
            trace=trace.name,
            start_index=piece.start_index,
            trace_start=datetime.fromtimestamp(piece.start_s, UTC).isoformat(),
            minutes=args.minutes,
            seconds_per_minute=args.seconds_per_minute,
            capacity_rps=args.capacity,
            target_utilisation=target_util,
            peak_rps=peak_rps,
            started_at=started,
            wall_s=time.monotonic() - wall_start,
            history_posted=posted,
            history_stepped=stepped,
            steps=rows,
            decisions=watch.decisions,
            changes=sorted(watch.changes, key=lambda c: c.get("created_at") or ""),
            events={
                t: {"during_run": after[t] - before.get(t, 0), "total": after[t]} for t in after
            },
        )
        paths = write_report(run, out_dir)
        say(f"Report: {out_dir}")
        print((out_dir / "summary.md").read_text())
        for kind, path in paths.items():
            print(f"  {kind:8s} {path}")

        if args.keep:
            say(f"--keep: {app} keeps running")
        else:
            say(f"Scaling {app} to 0 replicas (a spec change through the CMDB)")
            await scale_to_zero(client, platform, plan, sha)

    say("Look at the running platform")
    print("  make status                      what runs where; logs in .local/logs/")
    print(f"  curl -s '{platform.cmdb}/v1/instances?app={app}'")
    print(f"  curl -s '{platform.decision}/v1/apps/{app}/decisions?published=true'")
    print(f"  curl -s '{platform.pipeline}/v1/changes?app={app}'")
    print(f"  curl -s '{platform.monitor}/v1/targets?app={app}'")
    print(f"  .venv/bin/ooda events tail scale-decided --from-beginning --idle 2 | grep -A3 {app}")
    print("  API docs: http://127.0.0.1:800{1..5}/docs")
    print(f"wall time {time.monotonic() - wall_start:.0f}s")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python examples/demo", description=(__doc__ or "").split("\n\n")[0]
    )
    p.add_argument("--trace", default=DEFAULT_TRACE, help="series name, family/name or CSV path")
    p.add_argument("--start", type=int, default=DEFAULT_START, help="first trace step of the slice")
    p.add_argument("--minutes", type=float, default=DEFAULT_MINUTES, help="trace minutes to replay")
    p.add_argument(
        "--seconds-per-minute",
        type=float,
        default=DEFAULT_SECONDS_PER_MINUTE,
        help="live seconds per trace minute",
    )
    p.add_argument("--history-days", type=float, default=3.0, help="warm-start history (days)")
    p.add_argument(
        "--history-time",
        choices=("compressed", "original"),
        default="compressed",
        help="post history on the live clock (default) or at the trace's original timestamps "
        "(the live engine then fills the years-long gap step by step; see the report)",
    )
    p.add_argument(
        "--window-seconds", type=float, default=5.0, help="the monitor's scrape interval"
    )
    p.add_argument(
        "--capacity",
        type=float,
        default=10.0,
        help="req/s one instance serves (C); small, so a 2-core machine can offer the peak",
    )
    p.add_argument("--peak-instances", type=int, default=7, help="oracle instances at the peak")
    p.add_argument("--max-replicas", type=int, default=10)
    p.add_argument("--policy", default="predictive")
    p.add_argument(
        "--platform-cooldowns",
        action="store_true",
        help=(
            "keep real-time cooldowns (elastic: 1 min up, 5 min down) and scale-in window "
            "(predictive: 15 min), not compressed ones"
        ),
    )
    p.add_argument("--app", default=None, help="application id (default demo-<timestamp>)")
    p.add_argument(
        "--traces-dir", default=None, help="default: $OODA_TRACES_DIR, else the repo's data/traces"
    )
    p.add_argument("--keep", action="store_true", help="leave the app running at the end")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return asyncio.run(demo(args))
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
