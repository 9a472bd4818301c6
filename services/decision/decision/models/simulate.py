"""Walk-forward replay of a load trace through a policy, following the traces README contract.

- Capacity: C = peak / P, so the series maximum needs P replicas at 100% (P = 100 by default).
- At step t the policy sees only the load of steps before t (the last one is `last_load`).
- Provisioning: replicas requested at the start of step t serve from t + D; if D is not a whole
  number of steps they serve the remainder of that step, counted pro rata. Scale-in is immediate
  (pods stop serving when removed), and a scale-in cancels replicas still provisioning first, as
  Kubernetes deletes unready pods first; so a decision must also cover the current step.
- The oracle is clairvoyant: ceil(L_t / (C * U*)) replicas, serving at once.
- Metrics are computed on steps with a measured load; a gap is missing, never zero.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from decision.models.policies import (
    TARGET_UTILISATION,
    Observation,
    Policy,
    horizon_steps,
    replicas_for,
)
from decision.models.trace import Trace

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Run:
    """Per-step record of one replay: load, serving replicas, requests and what was sized for."""

    trace: str
    policy: str
    knob: float
    delay_min: float
    step_s: float
    capacity: float
    load: FloatArray  # L_t (NaN: gap)
    ready: FloatArray  # replicas serving during step t (time-weighted if they arrive mid-step)
    desired: NDArray[np.int64]  # replicas requested after the decision at step t
    oracle: FloatArray  # ceil(L_t / (C * U*))
    forecast: FloatArray  # central forecast the decision at t made for its horizon
    forecast_target: FloatArray  # load at the decision horizon (what that forecast aimed at)
    sized_for: FloatArray  # load the decision at t provisioned for
    split: int  # first step of the validation part


@dataclass(frozen=True)
class Metrics:
    """The README's evaluation metrics over a slice of a run."""

    steps: int
    saturation: float  # U: share of steps with load above ready capacity
    overprovision: float  # O: sum(ready) / sum(oracle) - 1
    unserved_pct: float  # load above capacity / total load, percent
    slack_pct: float  # idle share of ready capacity, percent
    actions_per_hour: float  # changes of the requested replica count per hour
    replica_hours: float
    oracle_replica_hours: float
    forecast_wape_pct: float  # sum |forecast - actual| / sum actual at the horizon, percent
    coverage_pct: float  # share of steps whose load stayed within what was sized for, percent

    def as_dict(self) -> dict[str, float]:
        """Plain mapping, for tables."""
        return {
            "U_pct": 100 * self.saturation,
            "O_pct": 100 * self.overprovision,
            "unserved_pct": self.unserved_pct,
            "slack_pct": self.slack_pct,
            "actions_per_hour": self.actions_per_hour,
            "replica_hours": self.replica_hours,
            "forecast_wape_pct": self.forecast_wape_pct,
            "coverage_pct": self.coverage_pct,
        }


def capacity_for(trace: Trace, replicas_at_peak: int = 100) -> float:
    """Per-replica capacity C at 100% so the trace's peak needs `replicas_at_peak` replicas."""
    if replicas_at_peak < 1:
        raise ValueError("replicas at peak must be at least 1")
    peak = trace.peak()
    if not math.isfinite(peak) or peak <= 0:
        raise ValueError(f"{trace.name}: no positive load, cannot scale capacity")
    return peak / replicas_at_peak


def oracle_replicas(
    load: FloatArray, capacity: float, target: float = TARGET_UTILISATION
) -> FloatArray:
    """ceil(L / (C * U*)) per step (NaN where the load is missing)."""
    with np.errstate(invalid="ignore"):
        return np.ceil(load / (capacity * target) - 1e-9)


def simulate(
    trace: Trace,
    policy: Policy,
    delay_min: float,
    *,
    replicas_at_peak: int = 100,
    target_utilisation: float = TARGET_UTILISATION,
) -> Run:
    """Replay `trace` walk-forward through `policy` with provisioning delay `delay_min` minutes."""
    load = trace.values
    n, step = trace.n, trace.step_s
    capacity = capacity_for(trace, replicas_at_peak)
    delay_s = 0.0 if policy.clairvoyant else 60.0 * delay_min
    delay_steps = delay_s / step
    horizon = horizon_steps(delay_s, step) - 1  # steps from t to when its replicas serve
    finite = np.flatnonzero(np.isfinite(load))
    if finite.size == 0:
        raise ValueError(f"{trace.name}: no valid load")
    # Start as a well-run service would: the first measured step served at U*.
    start = replicas_for(float(load[finite[0]]), capacity, target_utilisation)
    start = max(start, policy.min_replicas, 1)
    ready_now = start
    desired_now = start
    pending: deque[list[float]] = deque()  # [step at which they serve, count], oldest first
    ready = np.zeros(n)
    desired = np.zeros(n, dtype=np.int64)
    forecast = np.full(n, np.nan)
    sized_for = np.full(n, np.nan)
    times = trace.timestamps
    clairvoyant = policy.clairvoyant
    for t in range(n):
        while pending and pending[0][0] <= t + 1e-9:
            ready_now += int(pending.popleft()[1])
        obs = Observation(
            timestamp_s=float(times[t]),
            step_s=step,
            last_load=float(load[t - 1]) if t > 0 else math.nan,
            desired=desired_now,
            ready=ready_now,
            pending=desired_now - ready_now,
            capacity=capacity,
            delay_s=delay_s,
            load_now=float(load[t]) if clairvoyant else math.nan,
        )
        decision = policy.decide(obs)
        want = decision.replicas
        if want > desired_now:
            pending.append([t + delay_steps, float(want - desired_now)])
        elif want < desired_now:
            cut = desired_now - want
            while cut > 0 and pending:  # cancel replicas still provisioning, newest first
                take = min(cut, int(pending[-1][1]))
                pending[-1][1] -= take
                cut -= take
                if pending[-1][1] <= 0:
                    pending.pop()
            ready_now -= cut
        desired_now = want
        while pending and pending[0][0] <= t + 1e-9:  # zero delay (the oracle) serves at once
            ready_now += int(pending.popleft()[1])
        serving = float(ready_now)
        for due, count in pending:  # replicas arriving mid-step serve the rest of it
            if due < t + 1:
                serving += count * (t + 1 - due)
        ready[t] = serving
        desired[t] = desired_now
        forecast[t] = decision.forecast
        sized_for[t] = decision.sized_for
    target = np.full(n, np.nan)
    if horizon < n:
        target[: n - horizon] = load[horizon:]
    return Run(
        trace=trace.name,
        policy=policy.name,
        knob=float(policy.knob),
        delay_min=delay_min,
        step_s=step,
        capacity=capacity,
        load=load,
        ready=ready,
        desired=desired,
        oracle=oracle_replicas(load, capacity, target_utilisation),
        forecast=forecast,
        forecast_target=target,
        sized_for=sized_for,
        split=trace.split_index,
    )


def measure(run: Run, part: str = "validation") -> Metrics:
    """U, O, unserved, slack, actions/hour, forecast error over `part` (tuning/validation/all)."""
    if part == "tuning":
        sl = slice(0, run.split)
    elif part == "validation":
        sl = slice(run.split, None)
    elif part == "all":
        sl = slice(0, None)
    else:
        raise ValueError("part is tuning, validation or all")
    load, ready, oracle = run.load[sl], run.ready[sl], run.oracle[sl]
    ok = np.isfinite(load)
    load, ready, oracle = load[ok], ready[ok], oracle[ok]
    cap = ready * run.capacity
    steps = int(load.size)
    if steps == 0:
        nan = math.nan
        return Metrics(0, nan, nan, nan, nan, nan, nan, nan, nan, nan)
    hours = run.step_s / 3600.0
    total_load = float(load.sum())
    served = np.minimum(load, cap)
    desired = run.desired[sl]
    start = sl.start or 0
    # An action is a change of the requested count; the first step compares with the one before it.
    prev = run.desired[start - 1] if start > 0 else desired[0]
    changes = int(np.count_nonzero(np.diff(np.concatenate([[prev], desired]))))
    duration_h = desired.size * hours
    fc, actual = run.forecast[sl][ok], run.forecast_target[sl][ok]
    scored = np.isfinite(fc) & np.isfinite(actual)
    wape = math.nan
    if scored.any() and actual[scored].sum() > 0:
        wape = 100 * float(np.abs(fc[scored] - actual[scored]).sum() / actual[scored].sum())
    sized = run.sized_for[sl][ok]
    sized_ok = np.isfinite(sized) & np.isfinite(actual)
    coverage = (
        100 * float(np.mean(actual[sized_ok] <= sized[sized_ok])) if sized_ok.any() else math.nan
    )
    return Metrics(
        steps=steps,
        saturation=float(np.mean(load > cap + 1e-9 * run.capacity)),
        overprovision=float(ready.sum() / oracle.sum() - 1) if oracle.sum() > 0 else math.nan,
        unserved_pct=100 * float((load - served).sum() / total_load) if total_load > 0 else 0.0,
        slack_pct=100 * float(1 - served.sum() / cap.sum()) if cap.sum() > 0 else 0.0,
        actions_per_hour=changes / duration_h if duration_h > 0 else 0.0,
        replica_hours=float(ready.sum() * hours),
        oracle_replica_hours=float(oracle.sum() * hours),
        forecast_wape_pct=wape,
        coverage_pct=coverage,
    )
