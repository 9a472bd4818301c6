"""Walk-forward load forecasts at a quantile: seasonal profile, damped level, error quantiles.

The online `SeasonalForecaster` is cheap per step (O(horizon)) and refits only periodically:

- a robust daily profile (median over up to 7 day-blocks of the deviation from each block's mean,
  smoothed and shrunk toward zero when the days disagree), plus a weekly profile once two weeks
  of history exist, each kept only while the load's autocorrelation one period apart (with its
  slower wander removed) shows that cycle; with less than two days of history, or no cycle, the
  profile is zero, so the forecast falls back to the recent level and trend;
- recurring spikes (cron jobs, batch starts): short peaks seen at the same minute on most of the
  last days are added to the profile, which a median would otherwise erase;
- a small bank of damped-Holt filters (fast to slow) on the deseasonalised load, updated every
  step; each horizon uses the filter with the lowest recent error there - the real-time correction;
- per-horizon quantiles of the recent relative forecast errors (the last two days), measured in
  units of the recent error size (so they widen in turbulent spells and narrow in calm ones),
  refreshed every 15 minutes and blended with a wide prior while few errors are known; sizing uses
  a quantile of the load at the provisioning horizon rather than its mean;
- `maturity()` says how much history backs all this (policies widen their margin until it is 1),
  and an upper forecast never exceeds 1.5 times the highest load seen.

`ForecastTape` records the online forecaster walk-forward once per series and `ReplayForecaster`
replays it behind the same interface, so a sweep over policy knobs and delays does not recompute
forecasts that do not depend on the policy (the load does not depend on the replicas).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from decision.models.trace import Trace

DAY_S = 86400.0
WEEK_S = 7 * DAY_S
DEFAULT_QUANTILES: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)

FloatArray = NDArray[np.float64]


class Forecaster(Protocol):
    """What a policy needs from a forecaster: feed each step's load, ask for the next steps."""

    step_s: float
    horizon: int

    def observe(self, timestamp_s: float, value: float) -> None:
        """Take the load of the step starting at `timestamp_s` (NaN when missing)."""

    def point(self) -> FloatArray:
        """Central forecast of the next `horizon` steps."""
        ...

    def upper(self, quantile: float) -> FloatArray:
        """Forecast of the next `horizon` steps at `quantile` of the load distribution."""
        ...

    def maturity(self) -> float:
        """How much history backs the forecast: 0 (none) to 1 (enough to learn a day's shape)."""
        ...


def _circular_smooth(profile: FloatArray, width: int) -> FloatArray:
    """Moving average of a periodic profile over `width` neighbouring phases."""
    if width <= 1:
        return profile
    half = width // 2
    padded = np.concatenate([profile[-half:], profile, profile[:half]])
    kernel = np.full(2 * half + 1, 1.0 / (2 * half + 1))
    return np.convolve(padded, kernel, mode="valid")


def robust_profile(
    values: FloatArray, first_phase: int, period: int, smooth: int
) -> tuple[FloatArray, float]:
    """Seasonal profile by phase from whole periods of `values`, and its strength in [0, 1].

    Each period-long block has its own mean removed (so level changes between days do not leak into
    the shape), the profile is the median over blocks per phase, smoothed over `smooth` phases, and
    shrunk by the share of its variance that the disagreement between blocks cannot explain.
    """
    blocks = values.size // period
    profile = np.zeros(period)
    if blocks < 2:
        return profile, 0.0
    seg = values[values.size - blocks * period :].reshape(blocks, period)
    finite_share = np.mean(np.isfinite(seg), axis=1)
    seg = seg[finite_share >= 0.5]
    if seg.shape[0] < 2:
        return profile, 0.0
    with np.errstate(all="ignore"):
        dev = seg - np.nanmean(seg, axis=1, keepdims=True)
        by_pos = np.nanmedian(dev, axis=0)
        noise_var = np.nanvar(dev - by_pos, axis=0)
    by_pos = np.where(np.isfinite(by_pos), by_pos, 0.0)
    noise_var = np.where(np.isfinite(noise_var), noise_var, 0.0)
    start_phase = (first_phase + values.size - seg.shape[1] * blocks) % period
    profile[(start_phase + np.arange(period)) % period] = by_pos
    smoothed = _circular_smooth(profile, smooth)
    smoothed -= smoothed.mean()
    # A median's standard error is ~1.25x a mean's; smoothing averages `smooth` phases.
    se2 = 1.57 * float(np.mean(noise_var)) / seg.shape[0] / max(smooth, 1)
    signal = float(np.var(smoothed))
    strength = 0.0 if signal <= 0 else max(0.0, 1.0 - se2 / signal)
    return smoothed * strength, strength


def _rolling_mean(rows: FloatArray, half: int) -> FloatArray:
    """Mean over +-`half` neighbours along each row (NaN-aware, edges use what exists)."""
    ok = np.isfinite(rows)
    vals = np.where(ok, rows, 0.0)
    pad = ((0, 0), (half + 1, half))
    csum = np.cumsum(np.pad(vals, pad), axis=1)
    ccnt = np.cumsum(np.pad(ok.astype(np.float64), pad), axis=1)
    width = 2 * half + 1
    total = csum[:, width:] - csum[:, :-width]
    count = ccnt[:, width:] - ccnt[:, :-width]
    with np.errstate(all="ignore"):
        return total / count


def season_autocorrelation(values: FloatArray, period: int) -> float:
    """Autocorrelation at lag `period` of the load with its slower-than-a-period wander removed.

    The load minus its centred moving average over one period keeps the shape within a period
    (a daily cycle) and drops level changes and random-walk wander, which would otherwise make
    any lag look correlated. A real cycle of that period scores near 1, none near 0; NaN (no
    verdict) with less than two periods of data.
    """
    if period < 2 or values.size < 2 * period:
        return math.nan
    half = period // 2
    detrended = values - _rolling_mean(values[None, :], half)[0]
    finite = detrended[np.isfinite(detrended)]
    if finite.size < period:
        return math.nan
    # Clipped at its 1% tails, so a flash crowd or an outage does not decide on its own whether
    # the rest of the series repeats daily.
    low, high = np.quantile(finite, [0.01, 0.99])
    detrended = np.clip(detrended, low, high)
    a, b = detrended[:-period], detrended[period:]
    ok = np.isfinite(a) & np.isfinite(b)
    if np.count_nonzero(ok) < period:
        return math.nan
    a, b = a[ok] - a[ok].mean(), b[ok] - b[ok].mean()
    denom = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    return float(np.dot(a, b)) / denom if denom > 0 else 0.0


def recurring_excess(
    values: FloatArray, first_phase: int, period: int, width: int, local: int
) -> FloatArray:
    """Short spikes that come back at the same phase on most days (cron jobs, batch starts).

    A median profile (and its smoothing) erases short spikes even when they recur daily at the same
    minute. Here each day's load is compared with its own mean over +-`local` steps, so only sharp
    peaks count; a phase gets the spike height reached on the upper quartile of days when, on at
    least half of the days, a peak well above the step-to-step noise appears within +-`width` steps.
    """
    blocks = values.size // period
    excess = np.zeros(period)
    if blocks < 3:
        return excess
    seg = values[values.size - blocks * period :].reshape(blocks, period)
    seg = seg[np.mean(np.isfinite(seg), axis=1) >= 0.5]
    if seg.shape[0] < 3:
        return excess
    start_phase = (first_phase + values.size - blocks * period) % period
    with np.errstate(all="ignore"):
        sharp = seg - _rolling_mean(seg, local)
        sharp = np.where(np.isfinite(sharp), sharp, -np.inf)
        near = sharp.copy()
        for shift in range(1, width + 1):  # tolerate jitter in when the job starts
            near = np.maximum(near, np.roll(sharp, shift, axis=1))
            near = np.maximum(near, np.roll(sharp, -shift, axis=1))
        steps = np.diff(seg, axis=1)
        steps = steps[np.isfinite(steps)]
        noise = 1.4826 * float(np.median(np.abs(steps))) / math.sqrt(2) if steps.size else 0.0
        typical = np.quantile(near, 0.5, axis=0)
        height = np.quantile(near, 0.75, axis=0)
    keep = np.isfinite(typical) & (typical > 4 * noise) & np.isfinite(height)
    excess[(start_phase + np.arange(period)) % period] = np.where(keep, height, 0.0)
    return excess


class SeasonalForecaster:
    """Online quantile forecaster of the load of the next `horizon` steps."""

    def __init__(
        self,
        step_s: float,
        horizon: int,
        *,
        alphas: tuple[float, ...] = (0.15, 0.4, 0.9),
        beta: float = 0.01,
        phi: float = 0.9,
        history_days: int = 7,
        history_weeks: int = 4,
        refit_every_s: float = 3600.0,
        refresh_every_s: float = 900.0,
        error_window_s: float = 2 * DAY_S,
        selection_memory_s: float = 6 * 3600.0,
        prior_rel_sd: float = 0.15,
        prior_weight: float = 30.0,
        spikes: bool = True,
        mature_days: float = 3.0,
        min_autocorrelation: float = 0.3,
        peak_cap: float = 1.5,
        volatility_memory_s: float = 3600.0,
        volatility_floor: float = 0.5,
    ) -> None:
        if step_s <= 0 or horizon < 1 or not alphas:
            raise ValueError("step_s must be positive, horizon at least 1, and alphas non-empty")
        self.step_s = float(step_s)
        self.horizon = int(horizon)
        self.alphas = np.asarray(alphas, dtype=np.float64)
        self.beta, self.phi = beta, phi
        self.day = max(1, round(DAY_S / step_s))
        self.week = 7 * self.day
        self.history_days = history_days
        self.history_weeks = history_weeks
        self.refit_every = max(1, round(refit_every_s / step_s))
        self.refresh_every = max(1, round(refresh_every_s / step_s))
        self.window = max(60, round(error_window_s / step_s))
        self.selection_rate = min(1.0, step_s / selection_memory_s)
        self.prior_rel_sd = prior_rel_sd
        self.prior_weight = prior_weight
        self.spikes = spikes
        self.mature_steps = max(1.0, mature_days * DAY_S / step_s)
        self.peak_cap = peak_cap
        self.min_acf = min_autocorrelation
        self.daily_acf = math.nan  # autocorrelation at one day, as of the last refit
        self.weekly_acf = math.nan
        self._peak = 0.0  # highest load seen
        self.vol_rate = min(1.0, step_s / volatility_memory_s) if volatility_memory_s > 0 else 0.0
        self.vol_floor = volatility_floor
        self.seasonal = self.day >= 4  # a "day" of fewer than 4 steps has no usable shape
        k, h = self.alphas.size, self.horizon
        self._damp = np.cumsum(phi ** np.arange(1, h + 1))  # trend share of the h-step forecast
        self._hrange = np.arange(h)
        self._origin_abs: int | None = None  # grid index of the first observation since the epoch
        self._hist = np.full(1024, np.nan)
        self._n = 0
        # A small bank of damped-Holt filters, fast to slow; each horizon uses whichever has had
        # the lowest recent error there (fast ones win right after a shift, slow ones on noise).
        self._level = np.full(k, np.nan)
        self._trend = np.zeros(k)
        self._bank_err = np.zeros((k, h))
        self._typical = math.nan  # slow mean of the load: floor for relative errors near zero
        # Recent and long-run size of 1-step relative errors: errors are measured in units of the
        # recent one, so quantiles widen in turbulent spells and tighten in calm ones.
        self._vol_short = math.nan
        self._vol_long = math.nan
        self._vol_count = 0
        self._last_valid = math.nan
        self._valid = 0
        self._daily = np.zeros(self.day)
        self._weekly: FloatArray | None = None
        self.daily_strength = 0.0
        self.weekly_strength = 0.0
        # Forecasts issued at the last `horizon` origins, scored when their targets arrive.
        self._ring_bank = np.full((h, k, h), np.nan)
        self._ring_f = np.full((h, h), np.nan)
        self._ring_s = np.full((h, h), np.nan)
        self._ring_u = np.full(h, np.nan)
        self._errors = np.empty((self.window, h))
        self._err_count = 0
        self._err_pos = 0
        self._sorted: FloatArray | None = None
        self._qcache: dict[float, FloatArray] = {}
        self._rqcache: dict[float, FloatArray] = {}
        self.refreshes = 0  # how many times the error quantiles were re-read (the tape keys on it)
        self._point = np.full(h, np.nan)
        self._scale = np.full(h, np.nan)

    # --- state ----------------------------------------------------------------------------------
    @property
    def observed(self) -> int:
        """Number of valid loads seen so far."""
        return self._valid

    @property
    def error_count(self) -> int:
        """Number of scored forecast errors behind the quantiles (per horizon)."""
        return self._err_count

    def _seasonal_at(self, idx: NDArray[np.int64] | int) -> FloatArray:
        """Seasonal component (daily plus weekly) at grid indices counted from the first step."""
        assert self._origin_abs is not None
        absolute = np.asarray(idx) + self._origin_abs
        value: FloatArray = self._daily[absolute % self.day]
        if self._weekly is not None:
            value = value + self._weekly[absolute % self.week]
        return value

    # --- updates --------------------------------------------------------------------------------
    def observe(self, timestamp_s: float, value: float) -> None:
        """Take the load of the step starting at `timestamp_s`; NaN (or a skipped step) is a gap."""
        slot = round(timestamp_s / self.step_s)
        if self._origin_abs is None:
            if not math.isfinite(value):
                return  # nothing to anchor on yet
            self._origin_abs = slot
        idx = slot - self._origin_abs
        if idx < self._n:
            return  # a late or repeated step: the walk-forward state has moved on
        while self._n < idx:  # steps never reported are gaps, not zeros
            self._step(math.nan)
        self._step(value if math.isfinite(value) and value >= 0 else math.nan)

    def _step(self, x: float) -> None:
        """Advance one grid step with load `x` (NaN for a gap)."""
        i = self._n
        if i >= self._hist.size:
            self._hist = np.concatenate([self._hist, np.full(self._hist.size, np.nan)])
        self._hist[i] = x
        self._n = i + 1
        if math.isfinite(x):
            self._score(i, x)
            self._valid += 1
            self._last_valid = x
            self._peak = max(self._peak, x)
            rate = max(1.0 / self._valid, 1.0 / self.day)
            self._typical = (
                x if math.isnan(self._typical) else self._typical + rate * (x - self._typical)
            )
        self._update_levels(i, x)
        if self.seasonal and i > 0 and i % self.refit_every == 0:
            self._refit()
        self._forecast(i)
        if i % self.refresh_every == 0:
            self._refresh()

    def _score(self, i: int, x: float) -> None:
        """Score every earlier forecast aimed at step `i`: bank errors and relative errors."""
        if i < self.horizon:
            return
        rows = (i - 1 - self._hrange) % self.horizon  # origin i-h issued its h-step forecast for i
        bank = self._ring_bank[rows, :, self._hrange]  # (h, k)
        if np.all(np.isfinite(bank)):
            r = self.selection_rate
            self._bank_err += r * (np.abs(x - bank.T) - self._bank_err)
        f = self._ring_f[rows, self._hrange]
        s = self._ring_s[rows, self._hrange]
        if not (np.all(np.isfinite(f)) and np.all(s > 0)):
            return
        if self.vol_rate > 0:
            unit = self._ring_u[rows[0]]  # relative unit of the 1-step forecast for this step
            one = abs(x - f[0]) / unit if unit > 0 else 0.0
            self._vol_count += 1
            slow = max(1.0 / self._vol_count, 1.0 / self.window)
            fast = max(1.0 / self._vol_count, self.vol_rate)
            if math.isnan(self._vol_short):
                self._vol_short = self._vol_long = one
            self._vol_short += fast * (one - self._vol_short)
            self._vol_long += slow * (one - self._vol_long)
        self._errors[self._err_pos] = (x - f) / s
        self._err_pos = (self._err_pos + 1) % self.window
        self._err_count = min(self._err_count + 1, self.window)

    def _update_levels(self, i: int, x: float) -> None:
        """Damped Holt update of every filter's deseasonalised level; a gap propagates the trend."""
        if not math.isfinite(x):
            if self._valid:
                self._level += self.phi * self._trend
                self._trend *= self.phi
            return
        d = x - float(self._seasonal_at(i))
        if self._valid == 1:
            self._level[:] = d
            self._trend[:] = 0.0
            return
        expected = self._level + self.phi * self._trend
        level = expected + self.alphas * (d - expected)
        self._trend = self.beta * (level - self._level) + (1 - self.beta) * self.phi * self._trend
        self._level = level

    def _refit(self) -> None:
        """Re-estimate the daily (and weekly) profile from history, keeping the level continuous."""
        assert self._origin_abs is not None
        i = self._n - 1
        before = float(self._seasonal_at(i))
        hist = self._hist[max(0, self._n - self.history_days * self.day) : self._n]
        first = (self._origin_abs + self._n - hist.size) % self.day
        smooth = max(1, round(900.0 / self.step_s))
        # No cycle is assumed where the history shows none: the daily profile is kept only while
        # the load correlates with itself one day apart. Recurring spikes are too short to move
        # that correlation and carry their own test (the same minute on most days).
        self.daily_acf = season_autocorrelation(hist, self.day)
        if self.daily_acf >= self.min_acf:
            self._daily, self.daily_strength = robust_profile(hist, first, self.day, smooth | 1)
        else:
            self._daily, self.daily_strength = np.zeros(self.day), 0.0
        if self.spikes and self.day >= 48:  # needs steps short enough for a spike to be sharp
            width = max(1, round(120.0 / self.step_s))
            local = max(3, round(900.0 / self.step_s))
            self._daily = self._daily + recurring_excess(hist, first, self.day, width, local)
        self._weekly, self.weekly_strength = None, 0.0
        if self._n >= 2 * self.week:
            span = min(self.history_weeks, self._n // self.week) * self.week
            idx = np.arange(self._n - span, self._n)
            rest = self._hist[idx] - self._daily[(idx + self._origin_abs) % self.day]
            self.weekly_acf = season_autocorrelation(rest, self.week)
            if self.weekly_acf >= self.min_acf:
                first_w = (self._origin_abs + self._n - span) % self.week
                smooth_w = max(1, round(3600.0 / self.step_s))
                weekly, self.weekly_strength = robust_profile(
                    rest, first_w, self.week, smooth_w | 1
                )
                self._weekly = weekly if self.weekly_strength > 0 else None
        if self._valid:
            self._level += before - float(self._seasonal_at(i))

    def _forecast(self, i: int) -> None:
        """Point forecast for steps i+1..i+horizon and the scale its errors are measured in."""
        if not self._valid:
            return
        ahead = i + 1 + self._hrange
        bank = (
            self._level[:, None]
            + self._trend[:, None] * self._damp[None, :]
            + self._seasonal_at(ahead)[None, :]
        )
        np.maximum(bank, 0.0, out=bank)
        best = np.argmin(self._bank_err, axis=0)  # per horizon; ties go to the slowest filter
        point = bank[best, self._hrange]
        floor = 0.05 * self._typical if math.isfinite(self._typical) else 0.0
        unit = np.maximum(point, max(floor, 1e-12))
        scale = unit * self._volatility()
        self._point, self._scale = point, scale
        slot = i % self.horizon
        self._ring_bank[slot] = bank
        self._ring_f[slot] = point
        self._ring_s[slot] = scale
        self._ring_u[slot] = unit[0]
        self._qcache.clear()

    def _volatility(self) -> float:
        """Recent error size relative to the long run (never below `volatility_floor` of it)."""
        if self.vol_rate <= 0 or not self._vol_long > 0:
            return 1.0
        return max(self._vol_short, self.vol_floor * self._vol_long) / self._vol_long

    def _refresh(self) -> None:
        """Re-sort the recent relative errors from which quantiles are read."""
        if self._err_count == 0:
            self._sorted = None
        else:
            self._sorted = np.sort(self._errors[: self._err_count], axis=0)
        self.refreshes += 1
        self._rqcache.clear()
        self._qcache.clear()

    # --- answers --------------------------------------------------------------------------------
    def relative_quantile(self, quantile: float) -> FloatArray:
        """Quantile of relative errors per horizon, blended with a wide prior while data is few."""
        cached = self._rqcache.get(quantile)
        if cached is not None:
            return cached
        if not 0.0 < quantile < 1.0:
            raise ValueError("quantile must be in (0, 1)")
        # The prior widens with the horizon like a random walk; it rules until errors accumulate.
        prior = self.prior_rel_sd * NormalDist().inv_cdf(quantile) * np.sqrt(self._hrange + 1.0)
        if self._sorted is None:
            value = prior
        else:
            count = self._sorted.shape[0]
            pos = quantile * (count - 1)
            lo = math.floor(pos)
            hi = min(lo + 1, count - 1)
            emp = self._sorted[lo] + (pos - lo) * (self._sorted[hi] - self._sorted[lo])
            w = count / (count + self.prior_weight)
            value = w * emp + (1 - w) * prior
        self._rqcache[quantile] = value
        return value

    def maturity(self) -> float:
        """Share of `mature_days` of history seen (1 once daily shape and spikes can be learnt)."""
        return min(1.0, self._n / self.mature_steps) if self._valid else 0.0

    def scale(self) -> FloatArray:
        """Per-horizon unit of the relative errors: the point forecast, floored near zero."""
        return self._scale.copy()

    def point(self) -> FloatArray:
        """Central forecast of the next `horizon` steps (the last load while history is short)."""
        if not self._valid:
            return np.full(self.horizon, math.nan)
        return self._point.copy()

    def upper(self, quantile: float) -> FloatArray:
        """Forecast of the next `horizon` steps at `quantile`: point plus the error quantile."""
        cached = self._qcache.get(quantile)
        if cached is not None:
            return cached
        if not self._valid:
            return np.full(self.horizon, math.nan)
        value = np.maximum(self._point + self._scale * self.relative_quantile(quantile), 0.0)
        # Heavy-tailed errors (spikes of 1000x a near-zero baseline) can push a quantile far past
        # anything ever seen; more than `peak_cap` times the highest load is never worth sizing for.
        np.minimum(value, self.cap(), out=value)
        self._qcache[quantile] = value
        return value

    def cap(self) -> float:
        """Largest load an upper forecast may reach: `peak_cap` times the highest load seen."""
        return self.peak_cap * self._peak if self._peak > 0 else math.inf


@dataclass(frozen=True)
class ForecastTape:
    """Forecasts an online forecaster issued after each step of one series (row i: after step i)."""

    start_s: float
    step_s: float
    horizon: int
    quantiles: tuple[float, ...]
    point: FloatArray  # (n, horizon)
    upper: FloatArray  # (len(quantiles), n, horizon)
    maturity: FloatArray  # (n,)

    @classmethod
    def record(
        cls,
        trace: Trace,
        forecaster: Forecaster,
        quantiles: tuple[float, ...] = DEFAULT_QUANTILES,
    ) -> ForecastTape:
        """Run `forecaster` walk-forward over `trace` and keep what it answered after every step."""
        n, h = trace.n, forecaster.horizon
        point = np.full((n, h), np.nan)
        upper = np.full((len(quantiles), n, h), np.nan)
        maturity = np.zeros(n)
        times = trace.timestamps
        if isinstance(forecaster, SeasonalForecaster):
            # Fast path, same numbers: the error quantiles only change at a refresh, so keep one
            # table per refresh and combine it with the per-step point and scale afterwards.
            scale = np.full((n, h), np.nan)
            cap = np.full(n, np.inf)
            table_of = np.zeros(n, dtype=np.int64)
            tables: list[FloatArray] = []
            seen = -1
            for i in range(n):
                forecaster.observe(float(times[i]), float(trace.values[i]))
                point[i] = forecaster.point()
                scale[i] = forecaster.scale()
                maturity[i] = forecaster.maturity()
                cap[i] = forecaster.cap()
                if forecaster.refreshes != seen:
                    seen = forecaster.refreshes
                    tables.append(np.stack([forecaster.relative_quantile(q) for q in quantiles]))
                table_of[i] = len(tables) - 1
            rel = np.stack(tables)[table_of]  # (n, nq, h)
            upper = np.maximum(point[None] + scale[None] * rel.transpose(1, 0, 2), 0.0)
            upper = np.minimum(upper, cap[None, :, None])
        else:
            for i in range(n):
                forecaster.observe(float(times[i]), float(trace.values[i]))
                point[i] = forecaster.point()
                maturity[i] = forecaster.maturity()
                for k, q in enumerate(quantiles):
                    upper[k, i] = forecaster.upper(q)
        return cls(trace.start_s, trace.step_s, h, tuple(quantiles), point, upper, maturity)


class ReplayForecaster:
    """The `Forecaster` interface answered from a `ForecastTape` (same numbers, no refits)."""

    def __init__(self, tape: ForecastTape) -> None:
        self.tape = tape
        self.step_s = tape.step_s
        self.horizon = tape.horizon
        self._row = -1
        self._qindex = {q: k for k, q in enumerate(tape.quantiles)}

    def observe(self, timestamp_s: float, value: float) -> None:
        """Move to the row recorded after the step starting at `timestamp_s`."""
        row = round((timestamp_s - self.tape.start_s) / self.tape.step_s)
        self._row = min(max(row, self._row), self.tape.point.shape[0] - 1)

    def point(self) -> FloatArray:
        """Central forecast recorded after the current step."""
        if self._row < 0:
            return np.full(self.horizon, math.nan)
        return self.tape.point[self._row]

    def upper(self, quantile: float) -> FloatArray:
        """Quantile forecast recorded after the current step (only recorded quantiles exist)."""
        k = self._qindex.get(quantile)
        if k is None:
            raise KeyError(f"quantile {quantile} was not recorded; have {self.tape.quantiles}")
        if self._row < 0:
            return np.full(self.horizon, math.nan)
        return self.tape.upper[k, self._row]

    def maturity(self) -> float:
        """History behind the forecast recorded after the current step."""
        return float(self.tape.maturity[self._row]) if self._row >= 0 else 0.0
