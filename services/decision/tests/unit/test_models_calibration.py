"""Online headroom calibration: rolling conformal quantiles, tail extrapolation, ACI feedback."""

from __future__ import annotations

import numpy as np
import pytest

from decision.models.calibration import RollingQuantile, ViolationFeedback
from decision.models.forecast import season_autocorrelation

pytestmark = pytest.mark.unit


def test_a_rolling_quantile_covers_the_next_scores_at_its_level() -> None:
    rng = np.random.default_rng(3)
    q = RollingQuantile(2000, refresh=10)
    covered = []
    for x in rng.normal(size=6000):
        if q.count >= 1000:
            covered.append(x <= q.quantile(0.95))
        q.add(float(x))
    assert 0.93 <= np.mean(covered) <= 0.97


def test_one_outlier_does_not_set_a_far_quantile() -> None:
    rng = np.random.default_rng(4)
    q = RollingQuantile(800)
    for x in rng.exponential(size=799):
        q.add(float(x))
    before = q.quantile(0.999)
    q.add(1000.0)  # the window's maximum, a thousand times the typical score
    assert q.quantile(0.999) < before + 60  # the fitted tail moves, it does not jump to 1000
    assert 5.0 < before < 10.0  # exponential(1): the true 0.999 quantile is 6.9


def test_the_window_forgets_old_scores() -> None:
    q = RollingQuantile(100)
    for _ in range(100):
        q.add(10.0)
    for _ in range(100):
        q.add(1.0)
    assert q.quantile(0.9) == pytest.approx(1.0)


def test_violation_feedback_steers_towards_its_target_and_stays_bounded() -> None:
    fb = ViolationFeedback(0.01, gain=0.05)
    for _ in range(10):
        fb.update(True)
    raised = fb.offset
    assert raised > 0.4
    for _ in range(500):
        fb.update(False)
    assert fb.offset < raised
    for _ in range(100_000):
        fb.update(False)
    assert fb.offset == fb.low


def test_autocorrelation_finds_a_daily_cycle_and_not_a_random_walk() -> None:
    rng = np.random.default_rng(5)
    day = 288
    t = np.arange(4 * day)
    cycle = 100 + 30 * np.sin(2 * np.pi * t / day) + rng.normal(0, 3, t.size)
    walk = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, t.size)))
    assert season_autocorrelation(cycle, day) > 0.8
    assert season_autocorrelation(walk, day) < 0.3
    assert np.isnan(season_autocorrelation(cycle[: day + 10], day))  # under two periods
