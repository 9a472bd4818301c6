"""The demo's pure parts: finding and slicing a trace, the live (U, O) pair, the report files.

Nothing here talks to the platform, so the test suite checks it on hand-made series.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from decision.models.trace import Trace

DEFAULT_TRACE = "msft/mongo-01"
# Day 5 of mongo-01 (2018-04-29), 06:40-10:40: the morning ramp to the daily peak and down again.
DEFAULT_START = 4 * 1440 + 400
DEFAULT_MINUTES = 240
DEFAULT_SECONDS_PER_MINUTE = 1.5


class DemoError(RuntimeError):
    """Something the demo needs is missing; the message says what and how to fix it."""


def find_traces_dir(repo: Path, override: str | None = None) -> Path:
    """The traces folder: `override`, else `$OODA_TRACES_DIR`, else the repo's `data/traces`."""
    given = override or os.environ.get("OODA_TRACES_DIR")
    candidate = Path(given) if given else repo / "data" / "traces"
    if (candidate / "MANIFEST.csv").is_file():
        return candidate
    raise DemoError(
        f"no trace folder with a MANIFEST.csv at {candidate}: the repository ships its traces in "
        "data/traces; point --traces-dir or OODA_TRACES_DIR at another folder of the same layout"
    )


def resolve_trace(traces_dir: Path, name: str) -> Path:
    """A trace file from a path, `family/name`, or a bare series name such as `mongo-01`."""
    direct = Path(name)
    if direct.suffix == ".csv" and direct.is_file():
        return direct
    stem = name.removesuffix(".csv")
    for candidate in (traces_dir / f"{stem}.csv", *sorted(traces_dir.glob(f"*/{stem}.csv"))):
        if candidate.is_file():
            return candidate
    known = sorted(p.stem for p in traces_dir.glob("*/*.csv"))
    raise DemoError(f"no trace {name!r} in {traces_dir}; known: {', '.join(known)}")


@dataclass(frozen=True)
class Window:
    """One history window posted to the monitor, with its original timestamps."""

    start_s: float
    end_s: float
    mean: float  # raw trace units; scale before posting


@dataclass(frozen=True)
class Slice:
    """The part of a trace the demo replays live, and the history before it."""

    name: str
    step_s: float
    start_index: int
    start_s: float
    values: list[float]
    history: list[Window]

    @property
    def peak(self) -> float:
        """Largest valid value of the live part (what peak_rps is scaled to)."""
        finite = [v for v in self.values if math.isfinite(v)]
        if not finite or max(finite) <= 0:
            raise DemoError(f"{self.name}: the chosen slice holds no load")
        return max(finite)


def slice_trace(
    trace: Trace, start: int, minutes: float, history_days: float, window_s: float = 300.0
) -> Slice:
    """Steps `start` .. `start + minutes` of `trace`, and `history_days` before it in windows.

    History windows of `window_s` trace seconds end exactly where the live part begins; each holds
    the mean of the steps that start inside it. A window with no valid step is left out (a gap is
    missing, never zero).
    """
    steps = max(1, round(minutes * 60 / trace.step_s))
    if not 0 <= start < trace.n:
        raise DemoError(f"{trace.name}: --start {start} is outside 0..{trace.n - 1}")
    if start + steps > trace.n:
        raise DemoError(
            f"{trace.name}: {steps} steps from {start} run past its end ({trace.n} steps)"
        )
    start_s = trace.start_s + start * trace.step_s
    count = int(min(history_days * 86400, start * trace.step_s) // window_s)
    history = []
    for j in range(count, 0, -1):
        lo_s, hi_s = start_s - j * window_s, start_s - (j - 1) * window_s
        lo = math.ceil((lo_s - trace.start_s) / trace.step_s - 1e-9)
        hi = math.ceil((hi_s - trace.start_s) / trace.step_s - 1e-9)
        chunk = trace.values[max(lo, 0) : hi]
        valid = chunk[np.isfinite(chunk)]
        if valid.size:
            history.append(Window(lo_s, hi_s, float(valid.mean())))
    return Slice(
        name=trace.name,
        step_s=trace.step_s,
        start_index=start,
        start_s=start_s,
        values=[float(v) for v in trace.values[start : start + steps]],
        history=history,
    )


def compress_history(history: Sequence[Window], live_start_s: float, ratio: float) -> list[Window]:
    """The history on the live clock: trace time divided by `ratio` (trace seconds per live
    second), shifted so the window that ended where the slice begins ends at `live_start_s`."""
    if not history:
        return []
    end = history[-1].end_s
    return [
        Window(
            live_start_s - (end - w.start_s) / ratio,
            live_start_s - (end - w.end_s) / ratio,
            w.mean,
        )
        for w in history
    ]


def oracle(load: float, capacity: float, target_utilisation: float) -> int:
    """Replicas the traces README's oracle keeps for `load`: ceil(L / (C * U*))."""
    if not math.isfinite(load) or load <= 0:
        return 0
    return math.ceil(load / (capacity * target_utilisation) - 1e-9)


def live_u_o(
    load: Sequence[float], ready: Sequence[int], capacity: float, target_utilisation: float
) -> tuple[float, float]:
    """(U, O) of a run: U = share of steps whose load exceeded ready capacity (ready x C);
    O = sum(ready) / sum(oracle) - 1. Steps without a load reading are left out."""
    pairs = [(float(lo), int(r)) for lo, r in zip(load, ready, strict=True) if math.isfinite(lo)]
    if not pairs:
        return math.nan, math.nan
    saturated = sum(lo > r * capacity for lo, r in pairs)
    need = sum(oracle(lo, capacity, target_utilisation) for lo, _ in pairs)
    over = sum(r for _, r in pairs) / need - 1 if need else math.nan
    return saturated / len(pairs), over


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def parse_time(text: str | None) -> float | None:
    """Unix seconds of an ISO-8601 timestamp from an API, or None."""
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def decision_latencies(
    app: str, decisions: Sequence[dict[str, Any]], changes: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """For each published decision: its change (elastic requests it as `elastic/<app>/<id>`), the
    change's state and the seconds from the decision to the change finishing (ready)."""
    by_request = {c.get("request_id"): c for c in changes}
    out = []
    for d in decisions:
        change = by_request.get(f"elastic/{app}/{d['decision_id']}")
        decided = parse_time(d.get("decided_at"))
        finished = parse_time(change.get("finished_at")) if change else None
        out.append(
            {
                "decision_id": d["decision_id"],
                "decided_at": d.get("decided_at"),
                "desired_replicas": d.get("desired_replicas"),
                "change_id": change.get("id") if change else None,
                "state": change.get("state") if change else "no change",
                "seconds": finished - decided
                if decided is not None and finished is not None
                else None,
            }
        )
    return out


@dataclass
class StepRow:
    """One replayed step as the report shows it (times in seconds since the replay began)."""

    step: int
    t_s: float
    trace_value: float
    offered_rps: float
    served_rps: float
    failed: int
    slow: int
    dropped: int
    ready: int
    decisions: int = 0
    changes: int = 0


@dataclass
class RunData:
    """Everything the report needs, gathered from the run and the platform's APIs."""

    app: str
    trace: str
    start_index: int
    trace_start: str
    minutes: float
    seconds_per_minute: float
    capacity_rps: float
    target_utilisation: float
    peak_rps: float
    started_at: float  # unix seconds of the replay's first step
    wall_s: float
    history_posted: int
    history_stepped: int
    steps: list[StepRow]
    decisions: list[dict[str, Any]] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)
    events: dict[str, dict[str, int]] = field(default_factory=dict)


def summarise(run: RunData) -> dict[str, Any]:
    """The summary figures of a run (the JSON report)."""
    load = [s.offered_rps for s in run.steps]
    ready = [s.ready for s in run.steps]
    u, o = live_u_o(load, ready, run.capacity_rps, run.target_utilisation)
    latencies = decision_latencies(run.app, run.decisions, run.changes)
    secs = [
        x["seconds"] for x in latencies if x["seconds"] is not None and x["state"] == "succeeded"
    ]
    offered = sum(s.offered_rps for s in run.steps)
    served = sum(s.served_rps for s in run.steps)
    outcomes = Counter(f"{c.get('kind')}:{c.get('state')}" for c in run.changes)
    dlq = {t: v["during_run"] for t, v in run.events.items() if t.endswith(".dlq")}
    return {
        "app": run.app,
        "trace": run.trace,
        "slice": {
            "start_index": run.start_index,
            "start": run.trace_start,
            "minutes": run.minutes,
            "seconds_per_minute": run.seconds_per_minute,
            "steps": len(run.steps),
        },
        "sizing": {
            "capacity_rps": run.capacity_rps,
            "target_utilisation": run.target_utilisation,
            "peak_rps": run.peak_rps,
            "peak_oracle_instances": oracle(run.peak_rps, run.capacity_rps, run.target_utilisation),
        },
        "wall_seconds": round(run.wall_s, 1),
        "warm_start": {
            "windows_posted": run.history_posted,
            "windows_stepped": run.history_stepped,
        },
        "U": u,
        "O": o,
        "served_share": served / offered if offered else math.nan,
        "requests_failed": sum(s.failed for s in run.steps),
        "requests_slow": sum(s.slow for s in run.steps),
        "requests_dropped": sum(s.dropped for s in run.steps),
        "instances": {"min": min(ready, default=0), "max": max(ready, default=0)},
        "decisions_published": len(run.decisions),
        "decision_to_ready_s": {
            "n": len(secs),
            "p50": percentile(secs, 50),
            "p95": percentile(secs, 95),
        },
        "changes": {"total": len(run.changes), "outcomes": dict(sorted(outcomes.items()))},
        "events": run.events,
        "dead_letters_during_run": sum(dlq.values()),
    }


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.{digits}g}"
    return str(value)


def markdown(summary: dict[str, Any], latencies: list[dict[str, Any]]) -> str:
    """The human summary of a run."""
    s = summary
    lat = s["decision_to_ready_s"]
    lines = [
        f"# Closed-loop demo: {s['app']}",
        "",
        f"Trace `{s['trace']}` from step {s['slice']['start_index']} ({s['slice']['start']}), "
        f"{s['slice']['minutes']:g} trace minutes at {s['slice']['seconds_per_minute']:g} s each "
        f"({s['slice']['steps']} steps); peak {s['sizing']['peak_rps']:.0f} req/s, "
        f"C = {s['sizing']['capacity_rps']:g} req/s per instance, U* = "
        f"{s['sizing']['target_utilisation']:g} (oracle at peak: "
        f"{s['sizing']['peak_oracle_instances']} instances). Wall time {s['wall_seconds']} s.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| U (share of steps with load > ready capacity) | {_fmt(s['U'])} |",
        f"| O (sum ready / sum oracle - 1) | {_fmt(s['O'])} |",
        f"| served / offered | {_fmt(s['served_share'])} |",
        f"| failed / slow / dropped requests | {s['requests_failed']} / {s['requests_slow']} / "
        f"{s['requests_dropped']} |",
        f"| instances min..max | {s['instances']['min']}..{s['instances']['max']} |",
        f"| decisions published | {s['decisions_published']} |",
        f"| decision to ready p50 / p95 (s, n={lat['n']}) | {_fmt(lat['p50'])} / "
        f"{_fmt(lat['p95'])} |",
        f"| changes | {s['changes']['total']}: {s['changes']['outcomes']} |",
        f"| warm start windows posted / stepped by the model | "
        f"{s['warm_start']['windows_posted']} / {s['warm_start']['windows_stepped']} |",
        f"| dead letters during the run | {s['dead_letters_during_run']} |",
        "",
        "## Events per topic (end offsets)",
        "",
        "| topic | during the run | total |",
        "|---|---|---|",
        *(f"| {t} | {v['during_run']} | {v['total']} |" for t, v in sorted(s["events"].items())),
        "",
        "## Published decisions and their changes",
        "",
        "| decided at | desired | change | state | decision to ready (s) |",
        "|---|---|---|---|---|",
        *(
            f"| {x['decided_at']} | {x['desired_replicas']} | {x['change_id']} | {x['state']} | "
            f"{_fmt(x['seconds'])} |"
            for x in latencies
        ),
        "",
    ]
    return "\n".join(lines)


def caption(summary: dict[str, Any]) -> str:
    """The plot's caption: the run's (U, O) pair and what was served, readable on its own."""
    s = summary
    return (
        f"U = {_fmt(s['U'])} (share of steps whose load exceeded ready capacity)    "
        f"O = {_fmt(s['O'])} (ready instance-steps over the oracle's, minus 1)\n"
        f"served/offered = {_fmt(s['served_share'])}    "
        f"instances {s['instances']['min']}..{s['instances']['max']}    "
        f"changes {s['changes']['total']}    dead letters {s['dead_letters_during_run']}"
    )


def figure(run: RunData, summary: dict[str, Any]) -> Any:
    """Offered load, served, ready capacity, forecast; instances, oracle, decisions and changes.

    Titled, with labelled axes, legends, and the (U, O) pair in the caption, so the picture reads
    on its own.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s.t_s for s in run.steps]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7.5), sharex=True)
    top.plot(t, [s.offered_rps for s in run.steps], label="offered load", color="tab:blue")
    top.plot(t, [s.served_rps for s in run.steps], label="served", color="tab:green", lw=0.8)
    top.step(
        t,
        [s.ready * run.capacity_rps for s in run.steps],
        where="post",
        label="ready capacity (instances x C)",
        color="tab:orange",
    )
    forecast = [
        (at - run.started_at, d["forecast"]["value"])
        for d in run.decisions
        if d.get("forecast") and (at := parse_time(d.get("decided_at"))) is not None
    ]
    if forecast:
        top.scatter(*zip(*forecast, strict=True), s=12, color="tab:purple", label="forecast")
    top.set_ylabel("requests / s")
    top.legend(loc="upper left", fontsize=8)
    top.set_title(
        f"Closed-loop demo {run.app}: trace {run.trace} from step {run.start_index}, "
        f"{run.seconds_per_minute:g} s per trace minute"
    )
    bottom.step(t, [s.ready for s in run.steps], where="post", label="ready instances")
    bottom.step(
        t,
        [oracle(s.offered_rps, run.capacity_rps, run.target_utilisation) for s in run.steps],
        where="post",
        label="oracle ceil(L/(C U*))",
        color="grey",
        ls="--",
    )
    decided = [
        (at - run.started_at, d["desired_replicas"])
        for d in run.decisions
        if (at := parse_time(d.get("decided_at"))) is not None
    ]
    if decided:
        bottom.scatter(*zip(*decided, strict=True), marker="v", color="tab:red", label="decision")
    done = [
        (at - run.started_at, (c.get("target") or {}).get("replicas") or 0)
        for c in run.changes
        if (at := parse_time(c.get("finished_at"))) is not None
    ]
    if done:
        bottom.scatter(*zip(*done, strict=True), marker="o", color="tab:green", label="change done")
    bottom.set_ylabel("instances")
    bottom.set_xlabel("seconds since the replay began")
    bottom.legend(loc="upper left", fontsize=8)
    fig.text(0.5, 0.01, caption(summary), ha="center", va="bottom", fontsize=9, wrap=True)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def plot(run: RunData, path: Path, summary: dict[str, Any]) -> None:
    """Write `figure` as a PNG."""
    import matplotlib.pyplot as plt

    fig = figure(run, summary)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(run: RunData, out_dir: Path) -> dict[str, Path]:
    """Write plot.png, summary.md, summary.json and steps.json into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarise(run)
    latencies = decision_latencies(run.app, run.decisions, run.changes)
    paths = {
        "plot": out_dir / "plot.png",
        "markdown": out_dir / "summary.md",
        "json": out_dir / "summary.json",
        "steps": out_dir / "steps.json",
    }
    plot(run, paths["plot"], summary)
    paths["markdown"].write_text(markdown(summary, latencies))
    paths["json"].write_text(json.dumps(summary, indent=2, default=str, allow_nan=True) + "\n")
    paths["steps"].write_text(
        json.dumps(
            {
                "steps": [asdict(s) for s in run.steps],
                "decisions": latencies,
                "changes": run.changes,
            },
            indent=1,
            default=str,
        )
        + "\n"
    )
    return paths
