"""Evaluate the decision policies on every real trace, as `make evaluate` should.

Runs `python -m decision.cli evaluate` over `data/traces` (every trace x D in
{1, 2, 5, 10} minutes, each policy's knob swept, chosen at U <= 0.1% on the first 70%, reported on
the last 30%) and writes `report.md`, `chosen.csv`, `sweep.csv` and `pareto.png` to
`reports/decision-eval/`. It takes a few minutes on two cores; `--full` sweeps finer knobs.

    .venv/bin/python bench/decision_eval.py [--traces DIR] [--out DIR] [--full]
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
    ap.add_argument("--replicas-at-peak", type=int, default=100)
    args = ap.parse_args()
    argv = ["evaluate", "--traces", str(args.traces), "--out", str(args.out)]
    argv += ["--replicas-at-peak", str(args.replicas_at_peak)]
    return decision_cli([*argv, "--full"] if args.full else argv)


if __name__ == "__main__":
    raise SystemExit(main())
