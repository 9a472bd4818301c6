"""Setting selection at the U budget, and the replay/evaluate commands end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from decision.cli import main
from decision.models.evaluate import SweepPoint, choose, u_at_equal_cost
from decision.models.simulate import Metrics

pytestmark = pytest.mark.unit


def metrics(u: float, replica_hours: float) -> Metrics:
    return Metrics(100, u, replica_hours / 100 - 1, 0, 0, 1, replica_hours, 100, 0, 100)


def point(knob: str, tuning_u: float, tuning_rh: float) -> SweepPoint:
    return SweepPoint("t", "f", 5.0, "hpa", knob, metrics(tuning_u, tuning_rh), metrics(0, 1))


def test_the_cheapest_setting_within_the_u_budget_is_chosen() -> None:
    points = [point("a", 0.0, 150), point("b", 0.0008, 120), point("c", 0.002, 90)]
    chosen = choose(points)
    assert chosen.budget_met and chosen.point.knob == "b"


def test_without_any_setting_in_budget_the_lowest_u_is_chosen_and_flagged() -> None:
    chosen = choose([point("a", 0.01, 150), point("b", 0.02, 120)])
    assert not chosen.budget_met and chosen.point.knob == "a"


def sine_csv(path: Path, days: int) -> Path:
    """A daily sine of 5-minute steps as a `timestamp,value` file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        f"2019-05-{1 + d:02d}T{h:02d}:{m:02d}:00Z,{100 + 30 * np.sin(h / 24 * 6.28) + m / 10:.2f}"
        for d in range(days)
        for h in range(24)
        for m in range(0, 60, 5)
    ]
    path.write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    return path


def test_replay_prints_the_policy_hpa_and_oracle_side_by_side(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = sine_csv(tmp_path / "sine.csv", days=1)
    assert main(["replay", "--trace", str(path), "--policy", "predictive", "--delay", "5"]) == 0
    out = capsys.readouterr().out
    for needle in ("predictive (budget=0.001)", "hpa (u=0.7)", "oracle", "U %", "O %", "WAPE %"):
        assert needle in out


def test_evaluate_writes_the_report_tables_and_pareto_plot(tmp_path: Path) -> None:
    traces = tmp_path / "traces"
    sine_csv(traces / "sine.csv", days=2)
    out = tmp_path / "out"
    args = ["evaluate", "--traces", str(traces), "--out", str(out), "--delays", "5"]
    assert main([*args, "--policies", "predictive,hpa,oracle", "--workers", "1"]) == 0
    report = (out / "report.md").read_text()
    assert "| sine | 5 |" in report and "Targets" in report
    assert (out / "pareto.png").stat().st_size > 10_000
    # hpa's 11 settings and the oracle are swept; predictive runs once, self-tuned.
    assert (out / "sweep.csv").read_text().count("\n") == 1 + 1 + 11 + 1
    assert "self-tuned" in report
    assert "predictive" in (out / "chosen.csv").read_text()


def test_u_at_equal_cost_reads_the_settings_that_cost_at_most_that_much() -> None:
    # U falls as the sweep spends more: at 130 replica-hours the answer lies between the
    # settings of 120 and 150, not the lowest U of the whole sweep.
    points = [
        SweepPoint("t", "f", 5.0, "hpa", k, metrics(0, 1), metrics(u, rh))
        for k, u, rh in (("a", 0.004, 100), ("b", 0.003, 120), ("c", 0.001, 150))
    ]
    assert u_at_equal_cost(points, 130) == pytest.approx(0.003 - 0.002 / 3)
    assert np.isnan(u_at_equal_cost(points, 90))  # cheaper than any setting: unknown
