"""Predictive and baseline policies: reactive floor, outage guard, anti-flapping, baselines."""

from __future__ import annotations

import math

import numpy as np
import pytest

from decision.models import (
    Observation,
    OraclePolicy,
    PredictivePolicy,
    SeasonalNaivePolicy,
    StaticPeakPolicy,
    Trace,
    make_policy,
    measure,
    simulate,
)

pytestmark = pytest.mark.unit


def flat_then(days: float, level: float, after: list[float], step: float = 60.0) -> Trace:
    rng = np.random.default_rng(11)
    n = int(days * 86400 / step)
    values = np.concatenate([level + rng.normal(0, level * 0.01, n), np.asarray(after)])
    return Trace("synthetic", 0.0, step, values)


def test_reactive_floor_holds_on_a_flash_crowd() -> None:
    # Three quiet days at 100, then the load jumps to 400 and stays there.
    trace = flat_then(3, 100.0, [400.0] * 30)
    jump = trace.n - 30
    run = simulate(trace, PredictivePolicy(), delay_min=5, replicas_at_peak=100)
    need = math.ceil(400.0 / run.capacity - 1e-9)
    # The first decision that has seen the jump asks for at least what the new load needs...
    assert run.desired[jump + 1] >= need
    # ...and once those replicas are ready (D = 5 steps later) the crowd is served every step.
    assert np.all(run.ready[jump + 6 :] * run.capacity >= 400.0)
    decision = PredictivePolicy().decide(
        Observation(0.0, 60.0, 400.0, 1, 1, 0, capacity=run.capacity, delay_s=300.0)
    )
    assert decision.replicas >= need and "scale-up" in decision.reason


def test_outage_guard_keeps_capacity_when_the_load_collapses() -> None:
    trace = flat_then(1, 100.0, [2.0] * 60 + [100.0] * 20)
    run = simulate(trace, PredictivePolicy(), delay_min=10, replicas_at_peak=100)
    outage = slice(trace.n - 80, trace.n - 20)
    # During the hour-long outage capacity stays near 90% of the pre-collapse load...
    assert np.all(run.ready[outage] * run.capacity >= 0.85 * 100.0)
    # ...so when the traffic comes back all at once, at most a tenth of it waits for new replicas
    # (without the guard the policy would be down to a handful and serve almost none of it).
    assert np.all(run.ready[-20:] * run.capacity >= 0.9 * run.load[-20:])
    unguarded = simulate(trace, PredictivePolicy(outage_ratio=0), 10, replicas_at_peak=100)
    assert measure(unguarded, "all").unserved_pct > 10 * measure(run, "all").unserved_pct


def test_predictive_does_not_flap_on_noise() -> None:
    trace = flat_then(2, 100.0, [])
    run = simulate(trace, PredictivePolicy(), delay_min=2)
    assert measure(run, "validation").actions_per_hour < 0.5


def test_every_decision_explains_itself() -> None:
    trace = flat_then(1, 100.0, [150.0] * 5)
    policy = PredictivePolicy(budget=0.005)
    sim = simulate(trace, policy, delay_min=2)
    decision = policy.decide(
        Observation(trace.n * 60.0, 60.0, 150.0, int(sim.desired[-1]), 1, 0, sim.capacity, 120.0)
    )
    explanation = decision.explanation()
    assert explanation["policy"] == "predictive"
    assert explanation["forecast"]["quantile"] == 0.995  # the coverage it sizes for
    assert explanation["forecast"]["horizon_s"] == 180.0  # the current step plus 2 minutes
    assert explanation["capacity_per_instance"] == sim.capacity
    assert {"last_load", "target", "floor_load"} <= set(explanation["inputs"])
    assert explanation["reason"]


def test_seasonal_naive_sizes_for_the_load_one_day_earlier() -> None:
    policy = SeasonalNaivePolicy(0.5, period_s=600.0)  # a 10-step "day" keeps this small
    decisions = []
    for i in range(1, 25):
        load = 10.0 if i % 10 == 3 else 1.0  # a spike every "day" at step 3
        decisions.append(policy.decide(Observation(i * 60.0, 60.0, load, 1, 1, 0, 1.0, 60.0)))
    # At step 12 the horizon (steps 12-13) is one "day" after steps 2-3: the spike needs 20.
    assert decisions[11].replicas == 20
    assert decisions[15].replicas == 2


def test_static_peak_never_scales_in() -> None:
    policy = StaticPeakPolicy(0.5)
    first = policy.decide(Observation(0, 60, 10.0, 1, 1, 0, 1.0, 60.0)).replicas
    later = policy.decide(Observation(60, 60, 1.0, first, first, 0, 1.0, 60.0)).replicas
    assert first == later == 20


def test_oracle_sizes_the_current_load_at_the_target_utilisation() -> None:
    d = OraclePolicy().decide(Observation(0, 60, math.nan, 1, 1, 0, 1.0, 60.0, load_now=7.0))
    assert d.replicas == 10  # ceil(7 / 0.7)


def test_make_policy_builds_by_name_and_rejects_unknown_names() -> None:
    assert make_policy("hpa", 0.6).knob == 0.6
    predictive = make_policy("predictive", 0.01)
    assert isinstance(predictive, PredictivePolicy) and predictive.budget == 0.01
    with pytest.raises(ValueError):
        make_policy("magic")
    with pytest.raises(ValueError):
        make_policy("predictive", 0.9)  # a budget of 90% saturated steps is not a budget
