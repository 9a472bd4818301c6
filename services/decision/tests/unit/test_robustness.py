"""Robustness set: the predictive policy against a swept hpa on shapes autoscalers get wrong.

Each scenario comes from `decision.models.synthetic` (seeded, deterministic). The predictive
policy runs once with the headroom it learns itself; hpa's target utilisation is swept and chosen
at the budget on the tuning part, as in the evaluation.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from decision.models import HpaPolicy, PredictivePolicy, Run, measure, simulate
from decision.models.evaluate import U_BUDGET, SweepPoint, choose, u_at_equal_cost
from decision.models.forecast import SeasonalForecaster
from decision.models.synthetic import DAY_S, SCENARIOS

pytestmark = pytest.mark.unit

HPA_TARGETS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@functools.cache
def replay(name: str, delay_min: float) -> tuple[Run, PredictivePolicy, list[SweepPoint]]:
    """The predictive run, its policy (to read what it learnt) and hpa's sweep on a scenario."""
    trace = SCENARIOS[name]()
    policy = PredictivePolicy()
    run = simulate(trace, policy, delay_min)
    sweep = []
    for target in HPA_TARGETS:
        hpa = simulate(trace, HpaPolicy(target), delay_min)
        sweep.append(
            SweepPoint(
                trace.name,
                "synthetic",
                delay_min,
                "hpa",
                f"u={target}",
                measure(hpa, "tuning"),
                measure(hpa, "validation"),
            )
        )
    return run, policy, sweep


def saturated(run: Run) -> np.ndarray:
    """Steps whose load exceeded the ready capacity."""
    return run.load > run.ready * run.capacity + 1e-9


def learnt_acf(policy: PredictivePolicy) -> float:
    """Autocorrelation at one day that the policy's forecaster measured."""
    assert isinstance(policy.forecaster, SeasonalForecaster)
    return policy.forecaster.daily_acf


def test_on_a_flash_crowd_predictive_saturates_no_more_than_hpa_at_equal_cost() -> None:
    run, policy, sweep = replay("flash-crowd", 5.0)
    mine = measure(run, "validation")
    assert mine.saturation <= u_at_equal_cost(sweep, mine.replica_hours)
    # The crowd in the tuning part does not leave the headroom inflated for the days after it.
    hpa = choose(sweep).point.validation
    assert mine.replica_hours < 0.5 * hpa.replica_hours
    # A crowd is not a daily cycle: the forecaster assumes none.
    assert learnt_acf(policy) < 0.3


def test_on_daily_and_weekly_cycles_predictive_is_cheaper_than_hpa_at_the_budget() -> None:
    run, policy, sweep = replay("daily-weekly", 10.0)
    mine, hpa = measure(run, "validation"), choose(sweep)
    assert hpa.budget_met and mine.saturation <= U_BUDGET
    assert mine.replica_hours < 0.85 * hpa.point.validation.replica_hours
    assert isinstance(policy.forecaster, SeasonalForecaster)
    assert policy.forecaster.daily_acf > 0.8 and policy.forecaster.weekly_strength > 0.5


def test_on_a_random_walk_predictive_stays_within_a_few_percent_of_hpa() -> None:
    run, policy, sweep = replay("random-walk", 5.0)
    mine, hpa = measure(run, "validation"), choose(sweep).point.validation
    assert mine.replica_hours <= 1.05 * hpa.replica_hours
    assert mine.saturation <= 3 * U_BUDGET
    assert learnt_acf(policy) < 0.3  # no seasonality assumed where there is none
    assert isinstance(policy.forecaster, SeasonalForecaster)
    assert policy.forecaster.daily_strength == 0.0


def test_after_a_level_shift_capacity_catches_up_within_the_delay() -> None:
    run, _, _ = replay("level-shift", 5.0)
    shift = round(3.1 * DAY_S / 60.0)
    late = np.flatnonzero(saturated(run)[shift:])
    # Only the steps before replicas asked for at the shift can serve (D = 5 steps, plus the
    # step the shift is first seen in) are saturated; then the new level is served throughout.
    assert late.size and late.max() <= 6


def test_when_traffic_returns_after_an_outage_predictive_serves_it_and_hpa_does_not() -> None:
    run, _, sweep = replay("outage-recovery", 5.0)
    back = round(3.5 * DAY_S / 60.0) + 40
    assert not saturated(run)[back : back + 60].any()
    trace = SCENARIOS["outage-recovery"]()
    hpa = simulate(trace, HpaPolicy(0.7), 5.0)
    assert saturated(hpa)[back : back + 60].sum() >= 5
    mine = measure(run, "validation")
    assert mine.saturation < choose(sweep).point.validation.saturation
