"""Online calibration of headroom: conformal quantiles of recent ratios and violation feedback.

Two small learners the predictive policy uses to choose its own headroom from an application's
history, with nothing tuned on the future:

- `RollingQuantile`: the empirical quantile of the last `window` scores (split-conformal on a
  sliding window: with exchangeable scores, sizing at its `1 - alpha` quantile covers the next one
  with probability at least `1 - alpha`); quantiles further out than the window can show come
  from an exponential tail fitted to its highest scores (peaks over threshold), so one outlier
  does not set the headroom; re-sorted every `refresh` updates to stay cheap;
- `ViolationFeedback`: adaptive conformal inference (Gibbs and Candes, 2021) in its
  quantile-tracking form: an offset that rises by `gain` on every step the load exceeded the ready
  capacity and sinks by `gain * target` on every other step, so over the long run the share of
  violated steps tends to the target even when recent history stops predicting the next days.
"""

from __future__ import annotations

import math

import numpy as np


class RollingQuantile:
    """Quantiles of the last `window` scores, blended with a prior while few are known."""

    def __init__(
        self,
        window: int,
        *,
        refresh: int = 1,
        prior: float = 0.0,
        prior_n: float = 50.0,
        tail_min: int = 20,
        tail_share: float = 0.02,
    ):
        if window < 1 or refresh < 1:
            raise ValueError("window and refresh must be at least 1")
        self.window = window
        self.refresh = refresh
        self.prior = prior
        self.prior_n = prior_n
        self.tail_min = tail_min
        self.tail_share = tail_share
        self._buf = np.empty(window)
        self._count = 0
        self._pos = 0
        self._since = 0
        self._sorted: np.ndarray | None = None
        self._cache: dict[float, float] = {}

    @property
    def count(self) -> int:
        """Scores currently in the window."""
        return self._count

    def add(self, score: float) -> None:
        """Take one score (ignored when not finite)."""
        if not math.isfinite(score):
            return
        self._buf[self._pos] = score
        self._pos = (self._pos + 1) % self.window
        self._count = min(self._count + 1, self.window)
        self._since += 1
        if self._sorted is None or self._since >= self.refresh:
            self._sorted = np.sort(self._buf[: self._count])
            self._since = 0
            self._cache.clear()

    def quantile(self, level: float) -> float:
        """Empirical `level` quantile (at most the largest score), shrunk to the prior when few."""
        cached = self._cache.get(level)
        if cached is not None:
            return cached
        if self._sorted is None or self._sorted.size == 0:
            return self.prior
        data = self._sorted
        n = data.size
        tail = min(max(self.tail_min, math.ceil(self.tail_share * n)), n // 2)
        if tail >= 2 and (1.0 - level) * n < tail:
            # Beyond what the window can show (a 0.1% quantile of a few hundred scores would be
            # its maximum, one outlier), extrapolate an exponential tail fitted to the `tail`
            # highest scores: threshold plus mean excess times log(tail share / wanted share),
            # the mean excess read from their median (ln 2 of it), which one outlier cannot move.
            threshold = float(data[n - tail - 1])
            excess = (float(np.median(data[n - tail :])) - threshold) / math.log(2.0)
            emp = threshold + excess * math.log(tail / (n * (1.0 - level)))
        else:
            # Conformal rank: the ceil((n + 1) * level)-th smallest, capped at the largest.
            rank = min(math.ceil((n + 1) * level), n) - 1
            emp = float(data[max(rank, 0)])
        w = n / (n + self.prior_n)
        value = w * emp + (1 - w) * max(self.prior, emp)
        self._cache[level] = value
        return value


class ViolationFeedback:
    """Adaptive offset that steers the long-run share of violated steps to `target`."""

    def __init__(self, target: float, gain: float = 0.01, low: float = -0.1, high: float = 0.5):
        if not 0 < target < 1 or gain < 0 or low > 0 or high < 0:
            raise ValueError("need 0 < target < 1, gain >= 0 and low <= 0 <= high")
        self.target = target
        self.gain = gain
        self.low = low
        self.high = high
        self.offset = 0.0

    def update(self, violated: bool) -> float:
        """Record whether the last step's load exceeded the ready capacity; the new offset."""
        step = self.gain * ((1.0 if violated else 0.0) - self.target)
        self.offset = min(max(self.offset + step, self.low), self.high)
        return self.offset
