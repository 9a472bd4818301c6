"""Evaluate the decision policies on every real trace, and on the synthetic robustness set.

Runs `python -m decision.cli evaluate` over the repository's `data/traces`: every trace x D in
{1, 2, 5, 10} minutes, the baselines' knobs swept and chosen at U <= 0.1% on the first 70%,
`predictive` run once with the headroom it learns itself, all reported on the last 30%. Writes
`report.md`, `chosen.csv`, `sweep.csv` and `pareto.png` to `reports/decision-eval/`. With
`--synthetic` it also writes the seeded robustness scenarios and evaluates them the same way into
`reports/decision-eval/synthetic/`. A few minutes on two cores.

    .venv/bin/python bench/decision_eval.py [--traces DIR] [--out DIR] [--full] [--synthetic]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from decision.cli import main as decision_cli

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    """Parse the few options and hand over to the decision CLI."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--traces", type=Path, default=ROOT / "data" / "traces")
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "decision-eval")
    ap.add_argument("--full", action="store_true", help="finer knob sweeps (slower)")
    ap.add_argument("--synthetic", action="store_true", help="also evaluate the robustness set")
    ap.add_argument("--replicas-at-peak", type=int, default=100)
    args = ap.parse_args()
    extra = ["--replicas-at-peak", str(args.replicas_at_peak)] + (["--full"] if args.full else [])
    runs = [(args.traces, args.out)]
    if args.synthetic:
        scenarios = args.out / "synthetic-traces"
        if decision_cli(["synth", "--out", str(scenarios)]) != 0:
            return 1
        runs.append((scenarios, args.out / "synthetic"))
    for traces, out in runs:
        code = decision_cli(["evaluate", "--traces", str(traces), "--out", str(out), *extra])
        if code != 0:
            return code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
