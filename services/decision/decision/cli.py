"""Offline evaluator command line: replay one trace through a policy, or evaluate every trace.

    python -m decision.cli replay --trace FILE --policy NAME --delay MIN [--replicas-at-peak 100]
    python -m decision.cli evaluate --traces DIR --out DIR [--full] [--delays 1,2,5,10]
    python -m decision.cli synth --out DIR

`replay` runs the chosen policy, the hpa baseline and the oracle walk-forward over the same trace
and prints U, O, unserved %, slack %, actions per hour and forecast error side by side. `evaluate`
sweeps every policy's knob on every trace and delay and writes `report.md`, `chosen.csv`,
`sweep.csv` and `pareto.png` into the output folder. `synth` writes the robustness scenarios
(flash crowd, daily and weekly cycles, level shift, random walk, outage then recovery) as trace
CSVs under `DIR/synthetic/`, to evaluate them like the real traces.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from decision.models.evaluate import (
    DELAYS_MIN,
    FULL_LADDERS,
    LADDERS,
    compare,
    evaluate,
    target_lines,
    write_reports,
)
from decision.models.forecast import SeasonalForecaster
from decision.models.policies import (
    POLICIES,
    Policy,
    PredictivePolicy,
    horizon_steps,
    make_policy,
)
from decision.models.simulate import Metrics, measure, simulate
from decision.models.synthetic import write_all
from decision.models.trace import find_traces, load_trace

_COLUMNS = (
    ("U %", "saturation", 100.0, 3),
    ("O %", "overprovision", 100.0, 1),
    ("unserved %", "unserved_pct", 1.0, 3),
    ("slack %", "slack_pct", 1.0, 1),
    ("actions/h", "actions_per_hour", 1.0, 2),
    ("replica-h", "replica_hours", 1.0, 0),
    ("WAPE %", "forecast_wape_pct", 1.0, 2),
)


def _policy(args: argparse.Namespace, name: str, step_s: float) -> Policy:
    """Build a policy for replay from the command-line knobs."""
    if name == "predictive":
        horizon = horizon_steps(60.0 * args.delay, step_s)
        return make_policy(name, args.budget, forecaster=SeasonalForecaster(step_s, horizon))
    if name == "oracle":
        return make_policy(name)
    target = args.hpa_target if name == "hpa" else args.target
    return make_policy(name, target)


def _table(rows: list[tuple[str, Metrics]]) -> str:
    """Metrics of several policies side by side, one row each."""
    head = f"{'policy':<28}" + "".join(f"{title:>12}" for title, *_ in _COLUMNS)
    lines = [head, "-" * len(head)]
    for label, m in rows:
        cells = []
        for _, attr, factor, digits in _COLUMNS:
            value = float(getattr(m, attr)) * factor
            cells.append(f"{value:>12.{digits}f}" if value == value else f"{'-':>12}")
        lines.append(f"{label:<28}" + "".join(cells))
    return "\n".join(lines)


def cmd_replay(args: argparse.Namespace) -> int:
    """Replay one trace through the chosen policy, hpa and the oracle; print their metrics."""
    trace = load_trace(args.trace)
    names = [args.policy] + [n for n in ("hpa", "oracle") if n != args.policy]
    rows: list[tuple[str, Metrics]] = []
    started = time.perf_counter()
    for name in names:
        policy = _policy(args, name, trace.step_s)
        run = simulate(trace, policy, args.delay, replicas_at_peak=args.replicas_at_peak)
        if isinstance(policy, PredictivePolicy):
            label = f"{name} (budget={policy.budget:g})"
        else:
            label = name if name == "oracle" else f"{name} (u={policy.knob:g})"
        rows.append((label, measure(run, args.part)))
    print(
        f"{trace.name}: {trace.n} steps of {trace.step_s:g} s ({trace.missing} missing), "
        f"D = {args.delay:g} min, P = {args.replicas_at_peak}, part = {args.part} "
        f"({rows[0][1].steps} steps measured)"
    )
    print(_table(rows))
    print(
        "U: share of steps with load above ready capacity; O: replica-hours over the oracle's "
        "(ceil(L / (C * 0.7))) - 1; WAPE: forecast error at the provisioning horizon (hpa: the "
        f"last load persisting). {time.perf_counter() - started:.1f} s."
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Sweep every policy on every trace and delay; write the report, tables and Pareto plot."""
    paths = find_traces(args.traces)
    if not paths:
        print(f"no trace CSV under {args.traces}", file=sys.stderr)
        return 2
    delays = tuple(float(d) for d in args.delays.split(","))
    ladders = FULL_LADDERS if args.full else LADDERS
    if args.policies:
        wanted = set(args.policies.split(","))
        unknown = wanted - set(ladders)
        if unknown:
            print(f"unknown policies: {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        ladders = {k: v for k, v in ladders.items() if k in wanted}
    runs = sum(len(v) for v in ladders.values()) * len(delays) * len(paths)
    print(f"evaluating {len(paths)} traces x {len(delays)} delays ({runs} runs)...", flush=True)
    evaluation = evaluate(
        paths,
        delays=delays,
        ladders=ladders,
        replicas_at_peak=args.replicas_at_peak,
        workers=args.workers,
    )
    command = "python -m decision.cli " + " ".join(shlex.quote(a) for a in args.argv)
    written = write_reports(evaluation, args.out, command)
    print(f"done in {evaluation.seconds:.0f} s")
    if "predictive" in ladders and "hpa" in ladders:
        print("\n".join(target_lines(compare(evaluation))))
    for kind, path in written.items():
        print(f"{kind}: {path}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    """Write the synthetic robustness scenarios as trace CSVs."""
    for path in write_all(args.out):
        print(path)
    return 0


def parser() -> argparse.ArgumentParser:
    """Argument parser for `replay` and `evaluate`."""
    top = argparse.ArgumentParser(prog="python -m decision.cli", description=__doc__.split("\n")[0])
    sub = top.add_subparsers(dest="command", required=True)

    replay = sub.add_parser("replay", help="replay one trace through a policy, hpa and the oracle")
    replay.add_argument("--trace", required=True, type=Path, help="timestamp,value CSV")
    replay.add_argument("--policy", required=True, choices=sorted(POLICIES))
    replay.add_argument("--delay", required=True, type=float, help="provisioning delay, minutes")
    replay.add_argument("--replicas-at-peak", type=int, default=100, help="P (default 100)")
    replay.add_argument(
        "--part",
        choices=("validation", "tuning", "all"),
        default="validation",
        help="which part of the trace to measure (default: validation, the last 30%%)",
    )
    replay.add_argument(
        "--budget",
        type=float,
        default=0.001,
        help="predictive: share of saturated steps it aims at",
    )
    replay.add_argument("--target", type=float, default=0.7, help="utilisation target of others")
    replay.add_argument("--hpa-target", type=float, default=0.7, help="hpa target utilisation")
    replay.set_defaults(func=cmd_replay)

    ev = sub.add_parser("evaluate", help="sweep all policies over all traces and delays")
    ev.add_argument("--traces", required=True, type=Path, help="folder of trace CSVs (recursive)")
    ev.add_argument("--out", required=True, type=Path, help="folder for report.md, CSVs, PNG")
    ev.add_argument("--delays", default=",".join(f"{d:g}" for d in DELAYS_MIN))
    ev.add_argument("--replicas-at-peak", type=int, default=100, help="P (default 100)")
    ev.add_argument("--full", action="store_true", help="finer knob sweeps (several times slower)")
    ev.add_argument("--policies", default="", help="comma-separated subset of policies")
    ev.add_argument("--workers", type=int, default=None, help="processes (default: CPU count)")
    ev.set_defaults(func=cmd_evaluate)

    synth = sub.add_parser("synth", help="write the synthetic robustness scenarios as CSVs")
    synth.add_argument("--out", required=True, type=Path, help="folder (CSVs go to synthetic/)")
    synth.set_defaults(func=cmd_synth)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m decision.cli`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    args.argv = argv
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
