"""The forecaster learns daily shapes, sizes at a quantile, and degrades gracefully."""

from __future__ import annotations

import math

import numpy as np
import pytest

from decision.models import ForecastTape, ReplayForecaster, SeasonalForecaster, Trace

pytestmark = pytest.mark.unit

STEP = 300.0  # 5-minute steps: 288 per day keeps these tests fast
DAY = 288


def daily_sine(days: int, noise: float = 3.0, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(days * DAY)
    return 100 + 50 * np.sin(2 * np.pi * t / DAY) + rng.normal(0, noise, t.size)


def walk(values: np.ndarray, horizon: int, quantile: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Walk-forward forecasts at `horizon` steps: central and upper, aligned with their targets."""
    f = SeasonalForecaster(STEP, horizon)
    central = np.full(values.size, np.nan)
    upper = np.full(values.size, np.nan)
    for i, x in enumerate(values):
        f.observe(i * STEP, float(x))
        if i + horizon < values.size:
            central[i + horizon] = f.point()[horizon - 1]
            upper[i + horizon] = f.upper(quantile)[horizon - 1]
    return central, upper


def test_forecaster_learns_a_noisy_daily_sine_far_better_than_a_mean() -> None:
    values = daily_sine(6)
    central, _ = walk(values, horizon=6)
    last = slice(4 * DAY, None)  # after the daily profile has been learnt
    forecast_error = np.nanmean(np.abs(central[last] - values[last]))
    mean_error = np.mean(np.abs(values[last] - values[: 4 * DAY].mean()))
    assert forecast_error < 0.15 * mean_error  # about 4 against about 32
    # 30 minutes ahead on a ramp the shape matters: beat "the load stays as it is".
    persistence_error = np.mean(np.abs(values[last] - values[4 * DAY - 6 : -6]))
    assert forecast_error < 0.7 * persistence_error


def test_upper_forecast_covers_about_its_quantile() -> None:
    values = daily_sine(6)
    _, upper = walk(values, horizon=3, quantile=0.9)
    last = slice(4 * DAY, None)
    coverage = np.mean(values[last] <= upper[last])
    assert 0.8 <= coverage <= 0.98


def test_with_ten_points_it_falls_back_to_the_recent_level_with_a_wide_band() -> None:
    f = SeasonalForecaster(60.0, 5)
    rng = np.random.default_rng(3)
    for i, x in enumerate(50 + rng.normal(0, 2, 10)):
        f.observe(i * 60.0, float(x))
    point, upper = f.point(), f.upper(0.95)
    assert np.all(np.abs(point - 50) < 8)
    # The prior (15% relative spread) dominates: a wide band, not a falsely tight one.
    assert np.all(upper > point * 1.15) and np.all(np.isfinite(upper))
    assert f.maturity() < 0.01


def test_gaps_are_missing_not_zero() -> None:
    f = SeasonalForecaster(60.0, 3)
    for i in range(30):
        if i in (10, 11, 12):
            continue  # never reported
        value = math.nan if i == 20 else 80.0
        f.observe(i * 60.0, value)
    assert np.all(np.abs(f.point() - 80.0) < 1.0)


def test_a_spike_at_the_same_minute_every_day_is_anticipated() -> None:
    step, per_day = 120.0, 720
    values = np.full(5 * per_day, 100.0) + np.random.default_rng(5).normal(0, 1, 5 * per_day)
    at = 300  # 10:00 every day the batch job doubles the load for 6 minutes
    for day in range(5):
        values[day * per_day + at : day * per_day + at + 3] = 200.0
    f = SeasonalForecaster(step, 15)
    for i in range(4 * per_day + at - 11):
        f.observe(i * step, float(values[i]))
    ahead = f.point()  # steps at-10 .. at+4 of day 5
    assert ahead[10] > 150  # the spike, 20 minutes before it starts
    assert ahead[0] < 110  # but not the quiet minutes before it


def test_replay_answers_exactly_like_the_online_forecaster() -> None:
    values = daily_sine(3)
    trace = Trace("sine", 0.0, STEP, values)
    tape = ForecastTape.record(trace, SeasonalForecaster(STEP, 4), (0.5, 0.9))
    online, replay = SeasonalForecaster(STEP, 4), ReplayForecaster(tape)
    for i, x in enumerate(values):
        online.observe(i * STEP, float(x))
        replay.observe(i * STEP, float(x))
        assert np.allclose(online.point(), replay.point(), equal_nan=True)
        assert np.allclose(online.upper(0.9), replay.upper(0.9), equal_nan=True)
        assert online.maturity() == replay.maturity()
