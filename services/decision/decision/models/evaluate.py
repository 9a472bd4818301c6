"""Offline evaluation: sweep each policy's knob per trace and delay, pick settings at a U budget.

For every trace and provisioning delay D, each policy runs once per knob setting over the whole
series (walk-forward); its tuning metrics (first 70%) choose the setting with the fewest
replica-hours that keeps U within the budget (0.1% of steps) - or, when no setting meets it, the
setting with the lowest U - and that setting is reported on the validation part (last 30%). The
full sweep is kept for the Pareto table and plot. `predictive` is the exception: it chooses its
own headroom online from the series' past at the same budget, so it runs once per trace and
delay with nothing tuned on the trace (the baselines keep their hindsight tuning).
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from decision.models.forecast import ForecastTape, ReplayForecaster, SeasonalForecaster
from decision.models.policies import horizon_steps, make_policy
from decision.models.simulate import Metrics, measure, simulate
from decision.models.trace import Trace, find_traces, load_trace

U_BUDGET = 0.001  # 0.1% of steps saturated
DELAYS_MIN: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0)

Knob = float | None  # None: the policy chooses its own settings

# Default sweeps are coarse enough to run every trace x delay in a few minutes on two cores;
# `FULL_LADDERS` refines them over the same ranges. `predictive` is not swept: it learns its
# headroom online from each series' own history at the violation budget, so it runs once, with
# the settings it chose itself, and the baselines get the benefit of hindsight tuning.
LADDERS: dict[str, list[Knob]] = {
    "hpa": [0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9],
    "predictive": [None],
    "seasonal-naive": [0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
    "static-peak": [0.7, 0.8, 0.9, 1.0],
    "oracle": [0.7],
}
FULL_LADDERS: dict[str, list[Knob]] = {
    "hpa": [round(0.2 + 0.025 * k, 3) for k in range(31)],
    "predictive": [None],
    "seasonal-naive": [round(0.3 + 0.05 * k, 2) for k in range(14)],
    "static-peak": [0.6, 0.7, 0.8, 0.9, 1.0],
    "oracle": [0.7],
}


@dataclass(frozen=True)
class SweepPoint:
    """One policy at one knob setting on one trace and delay, measured on both parts."""

    trace: str
    family: str
    delay_min: float
    policy: str
    knob: str
    tuning: Metrics
    validation: Metrics


@dataclass(frozen=True)
class Choice:
    """The setting a policy would be deployed with for a trace and delay, and how it did."""

    point: SweepPoint
    budget_met: bool  # on the tuning part

    @property
    def relative_cost(self) -> float:
        """Validation replica-hours over the oracle's (1 + O)."""
        return 1.0 + self.point.validation.overprovision


@dataclass
class Evaluation:
    """Everything one evaluation produced: the sweep, the choices and how long it took."""

    points: list[SweepPoint] = field(default_factory=list)
    seconds: float = 0.0

    def choices(self, budget: float = U_BUDGET) -> dict[tuple[str, float, str], Choice]:
        """Chosen setting per (trace, delay, policy) from the tuning part."""
        groups: dict[tuple[str, float, str], list[SweepPoint]] = {}
        for p in self.points:
            groups.setdefault((p.trace, p.delay_min, p.policy), []).append(p)
        return {key: choose(pts, budget) for key, pts in groups.items()}


def choose(points: Sequence[SweepPoint], budget: float = U_BUDGET) -> Choice:
    """Fewest tuning replica-hours with tuning U within budget, else the lowest tuning U."""
    ok = [p for p in points if p.tuning.saturation <= budget + 1e-12]
    if ok:
        return Choice(min(ok, key=lambda p: p.tuning.replica_hours), True)
    best = min(points, key=lambda p: (p.tuning.saturation, p.tuning.replica_hours))
    return Choice(best, False)


def knob_label(knob: Knob) -> str:
    """Readable knob for tables: `u=0.7`, or `self-tuned` for a policy choosing its own."""
    if knob is None:
        return "self-tuned"
    return f"u={knob:g}"


def family_of(path: Path) -> str:
    """Family of a trace from its folder (msft, nab, dc)."""
    return path.parent.name


def tape_for(
    trace: Trace, max_delay_min: float, quantiles: Iterable[float] = (0.5,)
) -> ForecastTape:
    """Record the online forecaster once per trace, far enough ahead for the longest delay."""
    horizon = horizon_steps(60.0 * max_delay_min, trace.step_s)
    return ForecastTape.record(
        trace, SeasonalForecaster(trace.step_s, horizon), tuple(sorted(quantiles))
    )


def sweep_trace(
    path: Path,
    delays: Sequence[float] = DELAYS_MIN,
    ladders: dict[str, list[Knob]] | None = None,
    replicas_at_peak: int = 100,
) -> list[SweepPoint]:
    """All policies x knobs x delays on one trace; forecasts are recorded once and replayed."""
    ladders = LADDERS if ladders is None else ladders
    trace = load_trace(path)
    family = family_of(path)
    tape = tape_for(trace, max(delays)) if "predictive" in ladders else None
    points: list[SweepPoint] = []
    for delay in delays:
        for name, knobs in ladders.items():
            for knob in knobs:
                forecaster = ReplayForecaster(tape) if name == "predictive" and tape else None
                policy = make_policy(name, knob, forecaster=forecaster)
                run = simulate(trace, policy, delay, replicas_at_peak=replicas_at_peak)
                points.append(
                    SweepPoint(
                        trace.name,
                        family,
                        delay,
                        name,
                        knob_label(knob),
                        measure(run, "tuning"),
                        measure(run, "validation"),
                    )
                )
    return points


def _sweep_job(args: tuple[Path, Sequence[float], dict[str, list[Knob]], int]) -> list[SweepPoint]:
    """Process-pool entry point."""
    return sweep_trace(*args)


def evaluate(
    paths: Sequence[Path],
    delays: Sequence[float] = DELAYS_MIN,
    ladders: dict[str, list[Knob]] | None = None,
    replicas_at_peak: int = 100,
    workers: int | None = None,
) -> Evaluation:
    """Sweep every trace (in parallel processes, largest first) and collect the points."""
    ladders = LADDERS if ladders is None else ladders
    started = time.perf_counter()
    workers = workers or min(len(paths), os.cpu_count() or 1)
    # Largest traces first so the slowest job does not start last.
    order = sorted(paths, key=lambda p: p.stat().st_size, reverse=True)
    jobs = [(p, delays, ladders, replicas_at_peak) for p in order]
    result = Evaluation()
    if workers <= 1:
        for job in jobs:
            result.points.extend(_sweep_job(job))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for pts in pool.map(_sweep_job, jobs):
                result.points.extend(pts)
    result.points.sort(key=lambda p: (p.family, p.trace, p.delay_min, p.policy))
    result.seconds = time.perf_counter() - started
    return result


def evaluate_dir(directory: str | Path, **kwargs: object) -> Evaluation:
    """Evaluate every trace CSV under a folder."""
    paths = find_traces(directory)
    if not paths:
        raise FileNotFoundError(f"no trace CSV under {directory}")
    return evaluate(paths, **kwargs)  # type: ignore[arg-type]


def u_at_equal_cost(points: Sequence[SweepPoint], replica_hours: float) -> float:
    """Validation U of a policy's sweep interpolated at a given validation replica-hours.

    The envelope is the lowest U of the settings costing at most that much; NaN outside the range
    the sweep covers (what a policy would do with more or less than it was ever given is unknown).
    """
    pts = sorted((p.validation.replica_hours, p.validation.saturation) for p in points)
    xs = np.array([x for x, _ in pts])
    ys = np.minimum.accumulate(np.array([y for _, y in pts]))  # best U spending at most x
    if not xs[0] - 1e-9 <= replica_hours <= xs[-1] + 1e-9:
        return math.nan
    return float(np.interp(replica_hours, xs, ys))


# --- reports -----------------------------------------------------------------------------------
def write_sweep_csv(evaluation: Evaluation, path: Path) -> None:
    """Every sweep point with tuning and validation metrics (the full Pareto table)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        names = list(evaluation.points[0].validation.as_dict()) if evaluation.points else []
        writer.writerow(
            ["trace", "family", "delay_min", "policy", "knob"]
            + [f"tuning_{n}" for n in names]
            + [f"validation_{n}" for n in names]
        )
        for p in evaluation.points:
            writer.writerow(
                [p.trace, p.family, p.delay_min, p.policy, p.knob]
                + [f"{v:.6g}" for v in p.tuning.as_dict().values()]
                + [f"{v:.6g}" for v in p.validation.as_dict().values()]
            )


@dataclass(frozen=True)
class Comparison:
    """Chosen settings of every policy on one trace and delay, and predictive against hpa."""

    trace: str
    family: str
    delay_min: float
    chosen: dict[str, Choice]
    hpa_u_at_pred_cost: float  # hpa's validation U interpolated at predictive's replica-hours
    saving_at_equal_u_pct: float  # cheapest validation settings at the same U (Pareto check)
    budget: float = U_BUDGET

    @property
    def saving_pct(self) -> float:
        """Replica-hours predictive saves against hpa on validation, % (negative: costs more)."""
        return 100 * (
            1 - self.chosen["predictive"].relative_cost / self.chosen["hpa"].relative_cost
        )

    @property
    def hpa_meets(self) -> bool:
        """Whether hpa's chosen setting keeps U within budget on the validation part."""
        return self.chosen["hpa"].point.validation.saturation <= self.budget + 1e-12

    @property
    def actions_ratio(self) -> float:
        """Predictive's actions per hour over hpa's (hpa's floored at one per 20 hours)."""
        pred = self.chosen["predictive"].point.validation.actions_per_hour
        return pred / max(self.chosen["hpa"].point.validation.actions_per_hour, 0.05)


def compare(evaluation: Evaluation, budget: float = U_BUDGET) -> list[Comparison]:
    """One comparison per trace and delay that has both predictive and hpa in the sweep."""
    chosen = evaluation.choices(budget)
    sweeps: dict[tuple[str, float, str], list[SweepPoint]] = {}
    for p in evaluation.points:
        sweeps.setdefault((p.trace, p.delay_min, p.policy), []).append(p)
    out: list[Comparison] = []
    for trace, delay in sorted({(k[0], k[1]) for k in chosen}):
        mine = {k[2]: c for k, c in chosen.items() if k[0] == trace and k[1] == delay}
        if "predictive" not in mine or "hpa" not in mine:
            continue
        rh = mine["predictive"].point.validation.replica_hours
        u_eq = u_at_equal_cost(sweeps[(trace, delay, "hpa")], rh)
        # Hindsight check that does not depend on the tuning part: each policy's cheapest
        # validation setting whose U is within hpa's chosen U (or the budget, if larger).
        u_cap = max(mine["hpa"].point.validation.saturation, budget)
        pred_rh = cost_at_equal_u(sweeps[(trace, delay, "predictive")], u_cap)
        hpa_rh = cost_at_equal_u(sweeps[(trace, delay, "hpa")], u_cap)
        at_u = 100 * (1 - pred_rh / hpa_rh) if hpa_rh > 0 else math.nan
        out.append(Comparison(trace, mine["hpa"].point.family, delay, mine, u_eq, at_u, budget))
    return out


def cost_at_equal_u(points: Sequence[SweepPoint], u: float) -> float:
    """Fewest validation replica-hours among settings whose validation U is at most `u`."""
    ok = [p.validation.replica_hours for p in points if p.validation.saturation <= u + 1e-12]
    return min(ok) if ok else math.nan


def write_comparison_csv(comparisons: list[Comparison], path: Path) -> None:
    """Chosen settings per trace, delay and policy with their validation metrics, as CSV."""
    names = list(Metrics.__dataclass_fields__)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["trace", "family", "delay_min", "policy", "knob", "budget_met_on_tuning", "cost"]
            + [f"validation_{n}" for n in names]
            + ["saving_vs_hpa_pct", "hpa_U_pct_at_pred_cost"]
        )
        for c in comparisons:
            for name, choice in c.chosen.items():
                v = asdict(choice.point.validation)
                extra = [f"{c.saving_pct:.4g}", f"{100 * c.hpa_u_at_pred_cost:.4g}"]
                writer.writerow(
                    [c.trace, c.family, c.delay_min, name, choice.point.knob, choice.budget_met]
                    + [f"{choice.relative_cost:.5g}"]
                    + [f"{v[n]:.6g}" for n in names]
                    + (extra if name == "predictive" else ["", ""])
                )


def _fmt(value: float, digits: int = 1) -> str:
    """Number for a markdown cell; blank when missing."""
    return "" if math.isnan(value) else f"{value:.{digits}f}"


def _mean(values: Sequence[float]) -> float:
    """Mean, NaN when empty."""
    return float(np.mean(values)) if values else math.nan


def summary_lines(comparisons: list[Comparison]) -> list[str]:
    """Markdown table: mean cost and saving per family and delay."""
    lines = [
        "| family | D (min) | traces | predictive cost | hpa cost | saving % (all) "
        "| saving % where hpa meets budget (n) | worst there % | saving % at equal validation U "
        "| actions ratio mean / max |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    families = [*sorted({c.family for c in comparisons}), "all"]
    for fam in families:
        for delay in sorted({c.delay_min for c in comparisons}):
            sel = [c for c in comparisons if c.delay_min == delay and fam in ("all", c.family)]
            if not sel:
                continue
            met = [c.saving_pct for c in sel if c.hpa_meets]
            ratios = [c.actions_ratio for c in sel]
            lines.append(
                f"| {fam} | {delay:g} | {len(sel)} "
                f"| {_mean([c.chosen['predictive'].relative_cost for c in sel]):.3f} "
                f"| {_mean([c.chosen['hpa'].relative_cost for c in sel]):.3f} "
                f"| {_mean([c.saving_pct for c in sel]):.1f} "
                f"| {_fmt(_mean(met))} ({len(met)}) | {_fmt(min(met) if met else math.nan)} "
                f"| {_fmt(_mean([c.saving_at_equal_u_pct for c in sel]))} "
                f"| {_mean(ratios):.2f} / {max(ratios):.2f} |"
            )
    return lines


def target_lines(comparisons: list[Comparison]) -> list[str]:
    """The issue's targets, each checked against this evaluation."""

    def saving(fam: str, delay: float) -> float:
        return _mean(
            [c.saving_pct for c in comparisons if fam in ("all", c.family) and c.delay_min == delay]
        )

    fast = [c for c in comparisons if c.delay_min <= 2 and c.hpa_meets]
    fast_bad = [c for c in fast if c.saving_pct < -2]
    met = [c for c in comparisons if c.hpa_meets]
    worse = [c for c in met if c.saving_pct < -5]
    missed = [c for c in comparisons if not c.chosen["hpa"].budget_met]
    # Where hpa misses the budget, compare at equal cost: hpa's U at predictive's replica-hours
    # (unknown when predictive spends more or less than any hpa setting does).
    pareto_bad = [
        c
        for c in missed
        if not c.chosen["predictive"].point.validation.saturation <= c.hpa_u_at_pred_cost + 1e-12
    ]
    noisy = [c for c in comparisons if c.actions_ratio > 1.5]

    def names(cs: list[Comparison]) -> str:
        return ", ".join(f"{c.trace}@D{c.delay_min:g} ({c.saving_pct:+.1f}%)" for c in cs) or "none"

    def flag(ok: bool) -> str:
        return "met" if ok else "NOT met"

    s5, s10 = saving("all", 5.0), saving("all", 10.0)
    return [
        f"- D <= 2 min, predictive within 2% of hpa where hpa meets the budget: "
        f"{flag(not fast_bad)} ({len(fast) - len(fast_bad)}/{len(fast)}; worse: {names(fast_bad)})",
        f"- mean saving over all traces at D = 5 min >= 15%: {flag(s5 >= 15)} ({_fmt(s5)}%)",
        f"- mean saving over all traces at D = 10 min >= 25%: {flag(s10 >= 25)} ({_fmt(s10)}%)",
        f"- never more than 5% worse than hpa where hpa meets the budget: {flag(not worse)} "
        f"(worse: {names(worse)})",
        f"- where hpa misses the budget at every setting, no more violations than hpa at "
        f"predictive's replica-hours: "
        f"{flag(not pareto_bad)} ({len(missed) - len(pareto_bad)}/{len(missed)}; "
        f"not: {', '.join(f'{c.trace}@D{c.delay_min:g}' for c in pareto_bad) or 'none'})",
        f"- actions per hour at most 1.5x hpa's: {flag(not noisy)} "
        f"({len(comparisons) - len(noisy)}/{len(comparisons)}; over: "
        + (", ".join(f"{c.trace}@D{c.delay_min:g} x{c.actions_ratio:.1f}" for c in noisy) or "none")
        + ")",
    ]


def markdown_report(
    evaluation: Evaluation, comparisons: list[Comparison], command: str = ""
) -> str:
    """Markdown: how to read it, the targets, the summary, then one line per trace and delay."""
    lines = [
        "# Decision policies: walk-forward replay evaluation",
        "",
        f"Each baseline's knob is swept; the setting with the fewest replica-hours keeping U <= "
        f"{100 * U_BUDGET:g}% on the tuning part (first 70%) is reported on the validation part "
        "(last 30%). `predictive` is not swept: it runs once, with the headroom it learns online "
        "from each trace's past at the same budget (knob `self-tuned`). "
        "Cost = replica-hours / oracle replica-hours (oracle = ceil(L / (C * 0.7)); "
        "below 1 is leaner than the oracle's 70% target). Saving = 1 - predictive cost / hpa cost. "
        "`*`: no setting met the budget on the tuning part, so the lowest-U setting is shown. "
        "'hpa meets budget' = hpa's chosen setting keeps U <= 0.1% on validation. 'At equal U' "
        "is a hindsight Pareto check: each policy's cheapest validation setting with U at most "
        "max(hpa's chosen U, 0.1%).",
        "",
    ]
    if command:
        lines += [
            f"Command: `{command}` - {len(evaluation.points)} runs in {evaluation.seconds:.0f} s.",
            "",
        ]
    lines += ["## Targets", "", *target_lines(comparisons), ""]
    lines += ["## Summary (mean over traces)", "", *summary_lines(comparisons), ""]
    lines += [
        "## Per trace and delay (validation part, chosen settings)",
        "",
        "| trace | D | predictive cost (U%) | hpa cost (U%) | saving % | hpa U% at pred cost "
        "| saving % at equal U | seasonal-naive cost (U%) | static-peak cost (U%) | pred knob "
        "| hpa knob | actions/h pred / hpa | WAPE% pred / persistence |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(c: Comparison, name: str) -> str:
        ch = c.chosen.get(name)
        if ch is None:
            return ""
        star = "" if ch.budget_met else "*"
        return f"{ch.relative_cost:.3f}{star} ({100 * ch.point.validation.saturation:.2f})"

    for c in comparisons:
        pv, hv = c.chosen["predictive"].point.validation, c.chosen["hpa"].point.validation
        lines.append(
            f"| {c.trace} | {c.delay_min:g} | {cell(c, 'predictive')} | {cell(c, 'hpa')} "
            f"| {c.saving_pct:.1f} | {_fmt(100 * c.hpa_u_at_pred_cost, 2)} "
            f"| {_fmt(c.saving_at_equal_u_pct)} "
            f"| {cell(c, 'seasonal-naive')} | {cell(c, 'static-peak')} "
            f"| {c.chosen['predictive'].point.knob} | {c.chosen['hpa'].point.knob} "
            f"| {pv.actions_per_hour:.1f} / {hv.actions_per_hour:.1f} "
            f"| {_fmt(pv.forecast_wape_pct, 2)} / {_fmt(hv.forecast_wape_pct, 2)} |"
        )
    return "\n".join(lines) + "\n"


def pareto_plot(evaluation: Evaluation, path: Path, budget: float = U_BUDGET) -> None:
    """Validation cost (replica-hours / oracle) against U per policy, per trace and delay."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    traces = sorted({(p.family, p.trace) for p in evaluation.points})
    delays = sorted({p.delay_min for p in evaluation.points})
    colours = {
        "predictive": "tab:blue",
        "hpa": "tab:red",
        "seasonal-naive": "tab:green",
        "static-peak": "tab:gray",
        "oracle": "black",
    }
    chosen = evaluation.choices(budget)
    fig, axes = plt.subplots(
        len(traces), len(delays), figsize=(4.2 * len(delays), 2.6 * len(traces)), squeeze=False
    )
    for i, (_, trace) in enumerate(traces):
        for j, delay in enumerate(delays):
            ax = axes[i][j]
            for name, colour in colours.items():
                pts = [
                    p
                    for p in evaluation.points
                    if p.trace == trace and p.delay_min == delay and p.policy == name
                ]
                if not pts:
                    continue
                pts.sort(key=lambda p: p.validation.replica_hours)
                xs = [100 * p.validation.saturation for p in pts]
                ys = [1 + p.validation.overprovision for p in pts]
                ax.plot(xs, ys, "o-", ms=2.5, lw=0.8, color=colour, label=name)
                c = chosen.get((trace, delay, name))
                if c is not None:
                    ax.plot(
                        100 * c.point.validation.saturation,
                        c.relative_cost,
                        "*" if c.budget_met else "x",
                        ms=9,
                        color=colour,
                    )
            ax.axvline(100 * budget, color="k", lw=0.5, ls=":")
            ax.set_xscale("symlog", linthresh=0.1)
            ax.set_xlim(left=0)
            ax.set_title(f"{trace}  D={delay:g} min", fontsize=8)
            ax.tick_params(labelsize=7)
            if j == 0:
                ax.set_ylabel("replica-h / oracle", fontsize=7)
            if i == len(traces) - 1:
                ax.set_xlabel("U % (validation)", fontsize=7)
    axes[0][0].legend(fontsize=6, loc="upper right")
    fig.suptitle("Pareto: cost vs saturation per policy (star: chosen at U<=0.1% on tuning)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_reports(evaluation: Evaluation, out: str | Path, command: str = "") -> dict[str, Path]:
    """Write the sweep CSV, the chosen-settings CSV, the markdown report and the Pareto PNG."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    comparisons = compare(evaluation)
    paths = {
        "sweep": out / "sweep.csv",
        "chosen": out / "chosen.csv",
        "report": out / "report.md",
        "pareto": out / "pareto.png",
    }
    write_sweep_csv(evaluation, paths["sweep"])
    write_comparison_csv(comparisons, paths["chosen"])
    paths["report"].write_text(markdown_report(evaluation, comparisons, command))
    pareto_plot(evaluation, paths["pareto"])
    return paths
