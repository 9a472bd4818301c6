"""Scaling policies behind one interface: `decide(observation) -> Decision` (replicas and why).

Every policy is a stateful object fed one `Observation` per step, in time order, holding only what
was known at the start of that step (the previous step's load and the replica state). The same
objects run live and in the offline simulator. Each has one aggressiveness knob for the sweep:

- `hpa`: the Kubernetes HorizontalPodAutoscaler with its defaults; knob: target utilisation;
- `predictive`: the larger of a forecast and a reactive answer, each at a headroom it learns
  online from its own misses (no offline tuning), with burst fallback, an outage guard and
  scale-in after the provisioning delay; knob: the share of saturated steps it aims at;
- `seasonal-naive`: sizes for the load one day earlier over the horizon; knob: target utilisation;
- `static-peak`: the highest load seen so far, never scaling in; knob: target utilisation;
- `oracle`: clairvoyant `ceil(L_t / (C * U*))`, the yardstick of the O metric (simulator only).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from decision.models.calibration import RollingQuantile, ViolationFeedback
from decision.models.forecast import Forecaster, SeasonalForecaster

TARGET_UTILISATION = 0.7  # U*: the utilisation the oracle provisions for
_EPS = 1e-9  # ceil(4.0000000001) must stay 4 after float division


@dataclass(slots=True)
class Observation:
    """What a policy knows at the start of step t: the load of step t-1 and the replica state."""

    timestamp_s: float  # start of the step being decided
    step_s: float  # length of one step (the load is that step's average)
    last_load: float  # load of the previous step; NaN when it was not measured
    desired: int  # replicas currently requested
    ready: int  # replicas serving now
    pending: int  # replicas requested but not yet serving
    capacity: float  # load one replica serves at 100% utilisation
    delay_s: float  # provisioning delay: decision to ready capacity
    load_now: float = math.nan  # the current step's load, given only to clairvoyant policies


@dataclass(slots=True)
class Decision:
    """A replica count and its explanation: inputs, forecast and quantile, capacity, reason."""

    replicas: int
    reason: str
    policy: str
    current: int
    capacity: float
    inputs: dict[str, float | int | str | None] = field(default_factory=dict)
    forecast: float = math.nan  # central forecast at the decision horizon
    sized_for: float = math.nan  # the load the replica count was sized for
    quantile: float | None = None
    horizon_s: float = 0.0

    def explanation(self) -> dict[str, Any]:
        """What `scale-decided` carries: policy, replicas, forecast, capacity, inputs, reason."""
        forecast = None
        if math.isfinite(self.forecast):
            forecast = {
                "horizon_s": self.horizon_s,
                "value": max(
                    self.sized_for if math.isfinite(self.sized_for) else self.forecast, 0.0
                ),
                "central": max(self.forecast, 0.0),
                "quantile": self.quantile if self.quantile is not None else 0.5,
            }
        return {
            "policy": self.policy,
            "current_replicas": self.current,
            "desired_replicas": self.replicas,
            "forecast": forecast,
            "capacity_per_instance": self.capacity,
            "reason": self.reason,
            "inputs": dict(self.inputs),
        }


def replicas_for(load: float, capacity: float, utilisation: float) -> int:
    """Replicas needed to serve `load` at `utilisation` of each replica's `capacity`."""
    return math.ceil(load / (capacity * utilisation) - _EPS)


class Policy(ABC):
    """A stateful scaling policy: one `decide` call per step, in time order."""

    name: ClassVar[str]
    knob_name: ClassVar[str]
    clairvoyant: ClassVar[bool] = False  # sees the current step's load (oracle only)

    def __init__(self, *, min_replicas: int = 1, max_replicas: int = 100_000) -> None:
        if min_replicas < 0 or max_replicas < max(min_replicas, 1):
            raise ValueError("need 0 <= min_replicas <= max_replicas and max_replicas >= 1")
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas

    @property
    @abstractmethod
    def knob(self) -> float:
        """The aggressiveness setting this policy was built with."""

    @abstractmethod
    def decide(self, obs: Observation) -> Decision:
        """Desired replicas for the step starting at `obs.timestamp_s`, with the reason."""

    def _clamp(self, replicas: int) -> int:
        """Keep a replica count within the policy's bounds."""
        return min(max(replicas, self.min_replicas), self.max_replicas)

    def _hold(self, obs: Observation, reason: str) -> Decision:
        """Keep the current replica count."""
        return Decision(obs.desired, reason, self.name, obs.desired, obs.capacity)


def horizon_steps(delay_s: float, step_s: float) -> int:
    """Steps a decision covers: the current one (scale-in is immediate) up to when it serves."""
    return math.ceil(delay_s / step_s - _EPS) + 1


class HpaPolicy(Policy):
    """Kubernetes HPA (autoscaling/v2 defaults) on a utilisation metric, emulated per sync period.

    Per 15 s sync: utilisation is an integer percent over ready pods (as the resource metrics API
    gives it); desired = ceil(ready * util/target) unless |util/target - 1| <= tolerance; pods
    not yet ready count as idle when scaling up (so they damp further scale-up); scale-down uses
    the highest recommendation of the last 300 s; scale-up is limited to max(+100%, +4 pods) per
    sync. A trace step longer than 15 s runs several syncs on the same metric (one step old).

    Live windows shorter than the sync period (a monitor interval of a few seconds) do not make
    the emulated controller faster than Kubernetes: it syncs at most once per `sync_s`, on the
    mean of the metric over the last `metric_window_s` (metrics-server's default resolution) and
    holds in between.
    """

    name = "hpa"
    knob_name = "target utilisation"

    def __init__(
        self,
        target_utilisation: float = TARGET_UTILISATION,
        *,
        tolerance: float = 0.1,
        sync_s: float = 15.0,
        downscale_window_s: float = 300.0,
        scale_up_percent: float = 100.0,
        scale_up_pods: int = 4,
        metric_window_s: float = 15.0,
        min_replicas: int = 1,
        max_replicas: int = 100_000,
    ) -> None:
        super().__init__(min_replicas=max(min_replicas, 1), max_replicas=max_replicas)
        if not 0 < target_utilisation <= 1.5:
            raise ValueError("target utilisation must be in (0, 1.5]")
        self.target = target_utilisation
        self.target_pct = round(100 * target_utilisation)
        self.tolerance = tolerance
        self.sync_s = sync_s
        self.window_s = downscale_window_s
        self.up_percent = scale_up_percent
        self.up_pods = scale_up_pods
        self.metric_window_s = metric_window_s
        self._recs: deque[tuple[float, int]] = deque()  # (time, unstabilised recommendation)
        self._recent: deque[tuple[float, float]] = deque()  # (time, load) of short live windows
        self._next_sync = -math.inf

    @property
    def knob(self) -> float:
        """Target utilisation."""
        return self.target

    def raw_recommendation(self, load: float, capacity: float, ready: int, current: int) -> int:
        """Replica calculator: the unstabilised desired count from the metric and the pod states."""
        unready = max(current - ready, 0)
        if ready <= 0:
            return current  # no metrics from any pod: the controller skips this sync
        # Utilisation comes as an integer percent of requests, averaged over pods with metrics.
        util = math.floor(100.0 * load / (capacity * ready) + _EPS)
        ratio = util / self.target_pct
        if unready == 0 or ratio <= 1.0:
            if abs(1.0 - ratio) <= self.tolerance:
                return current
            return math.ceil(ratio * ready - _EPS)
        # Scaling up with unready pods: count them as idle and recompute, so a scale-up already in
        # flight is not repeated (and a direction change means do nothing).
        util_all = math.floor(100.0 * load / (capacity * (ready + unready)) + _EPS)
        new_ratio = util_all / self.target_pct
        if abs(1.0 - new_ratio) <= self.tolerance or new_ratio < 1.0:
            return current
        new = math.ceil(new_ratio * (ready + unready) - _EPS)
        return max(new, current)

    def _stabilise(self, raw: int, current: int, now: float) -> int:
        """Scale-down takes the highest recommendation of the window; scale-up is immediate."""
        recs = self._recs
        while recs and recs[0][0] <= now - self.window_s:
            recs.popleft()
        # Sliding-window maximum: an older recommendation not above a newer one can never be the
        # window's maximum again, so the deque stays short and decreasing (front = maximum).
        while recs and recs[-1][1] <= raw:
            recs.pop()
        recs.append((now, raw))
        return min(max(current, raw), recs[0][1])

    def _window_max_at(self, when: float) -> int:
        """Highest recorded recommendation still inside the window at time `when`."""
        for t, r in self._recs:
            if t > when - self.window_s:
                return r
        return 0

    def _limit(self, desired: int, current: int) -> int:
        """Scale-up rate limit: the larger of +100% and +4 pods per sync period."""
        by_percent = math.ceil(current * (1 + self.up_percent / 100.0) - _EPS)
        limit = max(by_percent, current + self.up_pods)
        return self._clamp(min(desired, limit))

    def _live_sync(self, obs: Observation) -> float | None:
        """For steps shorter than a sync: the metric to sync on now, or None between syncs."""
        now = obs.timestamp_s
        recent = self._recent
        if math.isfinite(obs.last_load):
            recent.append((now, obs.last_load))
        while recent and recent[0][0] <= now - self.metric_window_s:
            recent.popleft()
        if now < self._next_sync or not recent:
            return None
        # Half a step of slack keeps the loop on its period despite window jitter.
        self._next_sync = now + self.sync_s - obs.step_s / 2
        return sum(load for _, load in recent) / len(recent)

    def decide(self, obs: Observation) -> Decision:
        """Run the syncs that fall in this step on the last observed load."""
        load = obs.last_load
        if obs.step_s < self.sync_s:
            synced = self._live_sync(obs)
            if synced is None:
                return self._hold(obs, "between syncs")
            load = synced
        if not math.isfinite(load):
            return self._hold(obs, "no metric: hpa skips the sync")
        current = obs.desired
        syncs = max(1, round(obs.step_s / self.sync_s))
        raw = current
        for k in range(syncs):
            now = obs.timestamp_s + k * self.sync_s
            raw = self.raw_recommendation(load, obs.capacity, obs.ready, current)
            new = self._limit(self._stabilise(raw, current, now), current)
            last = obs.timestamp_s + (syncs - 1) * self.sync_s
            if new == current and k + 1 < syncs and self._window_max_at(last) == self._recs[0][1]:
                # Nothing moved and the window's maximum holds until the step's last sync, so the
                # remaining syncs repeat this one; only the newest time of it matters.
                self._recs[-1] = (last, raw)
                break
            current = new
        if current > obs.desired:
            reason = "utilisation above target"
        elif current < obs.desired:
            reason = "utilisation below target for the stabilisation window"
        elif raw < current:
            reason = "scale-down held by the stabilisation window"
        else:
            reason = "within tolerance"
        return Decision(
            current,
            reason,
            self.name,
            obs.desired,
            obs.capacity,
            inputs={"last_load": load, "ready": obs.ready, "pending": obs.pending, "raw": raw},
            forecast=load,  # the HPA implicitly expects the last load to persist
            sized_for=load / self.target,
            horizon_s=obs.delay_s,
        )


@dataclass
class _Answer:
    """One calibrated way to size: hybrid or reactive base, headroom as a ratio or an excess.

    A ratio headroom suits loads whose swings grow with the level (a daily cycle); an excess in
    units of the day's mean load suits loads that jump between regimes (a batch job starting),
    where a ratio would multiply the high regime by the jump as well.
    """

    hybrid: bool
    additive: bool
    scores: RollingQuantile
    cost: float = math.nan  # mean size over about the last day

    def score(self, load: float, base: float, scale: float) -> float:
        """How far the load at arrival was from the base this answer sized from."""
        if self.additive:
            return (load - base) / scale if scale > 0 else math.nan
        floor = 0.01 * scale if scale > 0 else 1e-12
        return math.log(max(load, floor) / max(base, floor))

    def size(self, base: float, scale: float, level: float, rate: float) -> float:
        """Load to size for at the calibrated quantile; updates the running cost."""
        q = self.scores.quantile(level)
        value = base + q * scale if self.additive else base * math.exp(q)
        value = max(value, 0.0)
        self.cost = value if math.isnan(self.cost) else self.cost + rate * (value - self.cost)
        return value


class PredictivePolicy(Policy):
    """Forecast-and-reactive hybrid whose headroom is learnt online from its own misses.

    Every step it has two answers, each sized at the same calibrated quantile of its own recent
    misses (ratio of the load when its replicas serve to what it was based on):

    - reactive: the last load (what an HPA sizes from);
    - hybrid: max(forecast over the steps its new replicas serve, last load), so it never
      provisions below the reactive answer at the same headroom (as AHPA takes the larger of its
      proactive and reactive answers).

    The headroom is the `1 - budget` conformal quantile of the last `calibration_s` of ratios plus
    an offset steered by the violations it actually sees (adaptive conformal inference), so the
    share of saturated steps tends to `budget` without a knob tuned offline. The hybrid is used
    while it costs less than the reactive answer over the last day at that coverage (a load with
    no forecastable shape stays reactive); when the load breaks the hybrid's band (a burst, a
    level shift) it falls back to the reactive answer at the reactive calibration for
    `fallback_s`. A deep collapse of the load (an outage upstream) holds capacity for the level
    before it, for `hold_s`, because the traffic usually comes back all at once.

    Scale-out is immediate. Scale-in goes to the highest target of the last scale-in window,
    which is at least the provisioning delay (capacity given back cannot return sooner), and
    only when it frees more than `hysteresis` of the replicas.
    """

    name = "predictive"
    knob_name = "violation budget"

    def __init__(
        self,
        budget: float = 0.001,
        *,
        forecaster: Forecaster | None = None,
        calibration_s: float = 3 * 86400.0,
        prior_headroom: float = 1.5,
        feedback_gain: float = 0.005,
        downscale_window_s: float | None = None,
        min_downscale_window_s: float = 300.0,
        hysteresis: float = 0.1,
        up_buffer: float = 0.05,
        fallback_s: float = 3600.0,
        outage_ratio: float = 0.25,
        hold_s: float = 2 * 3600.0,
        settle_steps: int = 3,
        season_s: float = 86400.0,
        min_replicas: int = 1,
        max_replicas: int = 100_000,
    ) -> None:
        super().__init__(min_replicas=max(min_replicas, 1), max_replicas=max_replicas)
        if not 0 < budget < 0.5 or prior_headroom < 1:
            raise ValueError("budget must be in (0, 0.5) and prior headroom at least 1")
        self.budget = budget
        self.forecaster = forecaster
        self.calibration_s = calibration_s
        self.prior = math.log(prior_headroom)
        self.prior_excess = prior_headroom - 1.0
        self.feedback = ViolationFeedback(budget, feedback_gain)
        self.window_s = downscale_window_s
        self.min_window_s = min_downscale_window_s
        self.hysteresis = hysteresis
        self.up_buffer = up_buffer
        self.fallback_s = fallback_s
        self.outage_ratio = outage_ratio
        self.hold_s = hold_s
        self.settle_steps = settle_steps
        # The forecaster models a daily cycle: a load whose cycle lasts `season_s` (a replay
        # sped up, a synthetic test) is fed to it on a clock where that cycle lasts a day.
        self.clock = 86400.0 / season_s
        self._answers: list[_Answer] = []
        self._pending: deque[tuple[int, float, float, float, float, float, bool]] = deque()
        self._suspects: deque[tuple[int, float, list[float]]] = deque()
        self._loads: dict[int, float] = {}
        self._targets: deque[tuple[float, int]] = deque()  # decreasing recent targets
        self._bases_h: deque[tuple[float, float]] = deque()  # decreasing recent hybrid bases
        self._bases_r: deque[tuple[float, float]] = deque()  # decreasing recent last loads
        self._last3: deque[float] = deque(maxlen=3)
        self._last_valid = math.nan
        self._short = math.nan  # load level over about an hour (frozen during a collapse)
        self._long = math.nan  # load level over about a day
        self._seen = 0
        self._guard = 0.0
        self._guard_until = -math.inf
        self._fallback_until = -math.inf
        self._serving = math.nan  # capacity that served the step whose load comes next
        self._prev_sized = 0.0  # load the last decision sized for

    @property
    def knob(self) -> float:
        """Target share of saturated steps."""
        return self.budget

    def _build_answers(self, step_s: float) -> list[_Answer]:
        """The four calibrated answers, built at the first step (their windows count steps)."""
        if not self._answers:
            window = max(100, round(self.calibration_s / step_s))
            refresh = max(1, round(600.0 / step_s))
            self._answers = [
                _Answer(
                    hybrid,
                    additive,
                    RollingQuantile(
                        window, refresh=refresh, prior=self.prior_excess if additive else self.prior
                    ),
                )
                for hybrid in (True, False)
                for additive in (False, True)
            ]
        return self._answers

    def _levels(self, load: float, step_s: float) -> None:
        """Update the hour and day load levels (the hour level stays put during a collapse)."""
        self._seen += 1
        day = max(1.0 / self._seen, min(1.0, step_s / 86400.0))
        hour = max(1.0 / self._seen, min(1.0, step_s / 3600.0))
        if math.isnan(self._long):
            self._short = self._long = load
        self._long += day * (load - self._long)
        if self._guard <= 0:
            self._short += hour * (load - self._short)

    def _outage_guard(self, now: float, load: float) -> float:
        """Load to keep capacity for after a collapse of the load (0 when none is in force)."""
        if now >= self._guard_until and self._guard > 0:
            self._guard = 0.0
            self._short = load if math.isfinite(load) else self._short
        if not math.isfinite(load) or self.outage_ratio <= 0:
            return self._guard
        self._last3.append(load)
        level = sorted(self._last3)[len(self._last3) // 2]  # one low step is not a collapse
        collapsed = level < self.outage_ratio * self._short and level < 0.5 * self._long
        if collapsed and self._guard <= 0 and len(self._last3) == 3:
            # What the last decision sized for still reflects the load before the collapse (its
            # bases are the highest of the scale-in window): keep that.
            self._guard, self._guard_until = self._prev_sized, now + self.hold_s
        return self._guard

    @staticmethod
    def _window_max(
        values: deque[tuple[float, float]], now: float, window: float, value: float
    ) -> float:
        """Add `value` at `now` to a decreasing sliding-max deque; the window's maximum."""
        while values and values[0][0] <= now - window:
            values.popleft()
        while values and values[-1][1] <= value:
            values.pop()
        values.append((now, value))
        return values[0][1]

    def _score(self, index: int, steps: int, first: int) -> bool:
        """Score decisions whose replicas have served; True when the load broke the hybrid band."""
        broke = False
        while self._pending and self._pending[0][0] + steps - 1 <= index:
            origin, base_h, base_r, scale, band, band_r, guarded = self._pending.popleft()
            seen = [self._loads.get(origin + k, math.nan) for k in range(first, steps)]
            seen = [v for v in seen if math.isfinite(v)]
            if not seen or guarded:
                continue
            load = max(seen)
            scores = [a.score(load, base_h if a.hybrid else base_r, scale) for a in self._answers]
            broke = broke or load > band
            if load > band_r:
                # Above even the reactive answer: noise, or the load moved to a new level (a
                # flash crowd, a shift)? Judged once the next steps are known.
                self._suspects.append((index, band_r, scores))
            else:
                self._learn(scores)
        while self._suspects and self._suspects[0][0] + self.settle_steps <= index:
            at, band_r, scores = self._suspects.popleft()
            after = [self._loads.get(at + k, math.nan) for k in range(1, self.settle_steps + 1)]
            after = sorted(v for v in after if math.isfinite(v))
            # A level that held is a shift: the reactive answer catches up with it within the
            # delay, and sizing every later step for a jump that size would cost for days.
            if not after or after[len(after) // 2] <= band_r:
                self._learn(scores)
        for k in [k for k in self._loads if k < index - steps - self.settle_steps]:
            del self._loads[k]
        return broke

    def _learn(self, scores: list[float]) -> None:
        """Add one decision's scores to every answer's calibration window."""
        for answer, score in zip(self._answers, scores, strict=True):
            answer.scores.add(score)

    def decide(self, obs: Observation) -> Decision:
        """Hybrid or reactive answer at the learnt headroom, with damped scale-in."""
        step = obs.step_s
        steps = horizon_steps(obs.delay_s, step)
        if self.forecaster is None:
            # Live default: forecast far enough for this delay (plus slack for a slower one).
            self.forecaster = SeasonalForecaster(step * self.clock, max(steps, 2) * 2)
        f = self.forecaster
        f.observe((obs.timestamp_s - step) * self.clock, obs.last_load)
        answers = self._build_answers(step)
        now = obs.timestamp_s
        index = round(now / step) - 1  # grid index of the step whose load just arrived
        load = obs.last_load
        if math.isfinite(load):
            if math.isfinite(self._serving):
                self.feedback.update(load > self._serving * (1 + 1e-9))
            self._last_valid = load
            self._loads[index] = load
            self._levels(load, step)
        steps = min(steps, f.horizon)
        first = min(math.floor(obs.delay_s / step + _EPS), steps - 1)  # when new replicas serve
        if self._score(index, steps, first):
            self._fallback_until = now + self.fallback_s
        guard = self._outage_guard(now, load)
        last = self._last_valid
        if not math.isfinite(last):
            return self._hold(obs, "no load observed yet")
        ahead = f.point()[first:steps]
        central = float(ahead.max()) if ahead.size and np.all(np.isfinite(ahead)) else math.nan
        window = self.window_s
        if window is None:
            window = max(obs.delay_s + step, self.min_window_s)
        # Each answer is based on its highest base of the scale-in window, as the replicas it
        # keeps are: what it is calibrated against is then what actually serves (a one-step dip
        # of the load neither shrinks capacity nor looks like a miss afterwards).
        reactive_base = self._window_max(self._bases_r, now, window, last)
        hybrid_now = max(central, last) if math.isfinite(central) else last
        hybrid_base = self._window_max(self._bases_h, now, window, hybrid_now)
        level = 1.0 - self.budget
        scale = self._long if self._long > 0 else last
        rate = max(1.0 / self._seen, min(1.0, step / 86400.0)) if self._seen else 1.0
        sizes = [
            a.size(hybrid_base if a.hybrid else reactive_base, scale, level, rate) for a in answers
        ]
        # The cheapest calibrated answer over the last day, per kind: where the forecast does not
        # pay (no shape, too little history), the reactive one costs less and is used alone.
        best_h = min(range(2), key=lambda k: answers[k].cost)
        best_r = min(range(2, 4), key=lambda k: answers[k].cost)
        use_forecast = answers[best_h].cost < answers[best_r].cost
        fallback = now < self._fallback_until
        feedback = math.exp(self.feedback.offset)
        need_forecast = sizes[best_h] * feedback if use_forecast else 0.0
        need_reactive = sizes[best_r] * feedback if fallback or not use_forecast else 0.0
        guard_need = guard
        sized_for = max(need_forecast, need_reactive, guard_need, last)
        self._prev_sized = sized_for
        target = self._clamp(replicas_for(sized_for, obs.capacity, 1.0))
        band = need_forecast if use_forecast and not fallback else math.inf
        band_r = sizes[best_r] * feedback
        guarded = guard_need >= sized_for and guard > 0
        self._pending.append((index + 1, hybrid_base, reactive_base, scale, band, band_r, guarded))
        targets = self._targets
        while targets and targets[0][0] <= now - window:
            targets.popleft()
        while targets and targets[-1][1] <= target:
            targets.pop()
        targets.append((now, target))
        current = obs.desired
        if guarded:
            driver = "outage guard"
        elif need_forecast >= need_reactive:
            driver = "forecast"
        elif fallback:
            driver = "reactive fallback (the load broke the forecast band)"
        else:
            driver = "reactive"
        if target > current:
            # A little over the target, so that the next small rise does not scale out again.
            new = self._clamp(math.ceil(target * (1 + self.up_buffer) - _EPS))
            reason = f"scale-up: {driver} ({steps} steps ahead)"
        else:
            # Scale in to the highest target of the window, and only when that frees more than
            # the hysteresis band: small wobbles never move the replica count.
            settled = self._clamp(targets[0][1])
            if current - settled >= max(1.0, self.hysteresis * current):
                new, reason = settled, f"scale-down: {driver} stayed lower through the window"
            else:
                new, reason = current, "hold: within hysteresis or scale-in window"
        self._serving = min(obs.ready, new) * obs.capacity
        return Decision(
            new,
            reason,
            self.name,
            current,
            obs.capacity,
            inputs={
                "last_load": obs.last_load,
                "ready": obs.ready,
                "pending": obs.pending,
                "target": target,
                "forecast_load": need_forecast,
                "floor_load": need_reactive,
                "guard_load": guard_need,
                "headroom_forecast": sizes[best_h] / max(hybrid_base, _EPS),
                "headroom_reactive": sizes[best_r] / max(reactive_base, _EPS),
                "feedback_offset": self.feedback.offset,
                "mode": "hybrid" if use_forecast else "reactive",
                "fallback": int(fallback),
                "daily_acf": getattr(f, "daily_acf", None),
            },
            forecast=central if math.isfinite(central) else reactive_base,
            sized_for=sized_for,
            quantile=level,
            horizon_s=steps * step,
        )


class SeasonalNaivePolicy(Policy):
    """Size for the load one day earlier over the coming horizon (no floor, no smoothing)."""

    name = "seasonal-naive"
    knob_name = "target utilisation"

    def __init__(
        self,
        target_utilisation: float = TARGET_UTILISATION,
        *,
        period_s: float = 86400.0,
        min_replicas: int = 1,
        max_replicas: int = 100_000,
    ) -> None:
        super().__init__(min_replicas=max(min_replicas, 1), max_replicas=max_replicas)
        self.target = target_utilisation
        self.period_s = period_s
        self._history: dict[int, float] = {}
        self._last_valid = math.nan

    @property
    def knob(self) -> float:
        """Target utilisation."""
        return self.target

    def decide(self, obs: Observation) -> Decision:
        """Replicas for the day-ago load of the steps until new capacity is ready."""
        slot = round(obs.timestamp_s / obs.step_s) - 1
        if math.isfinite(obs.last_load):
            self._history[slot] = obs.last_load
            self._last_valid = obs.last_load
        period = round(self.period_s / obs.step_s)
        steps = horizon_steps(obs.delay_s, obs.step_s)
        self._history.pop(slot - period - steps - 1, None)  # keep one period plus the horizon
        past = [self._history.get(slot + h - period, math.nan) for h in range(1, steps + 1)]
        finite = [v for v in past if math.isfinite(v)]
        if finite:
            sized_for, reason = max(finite), "day-ago load over the horizon"
        elif math.isfinite(self._last_valid):
            sized_for, reason = self._last_valid, "no day-ago data: last load"
        else:
            return self._hold(obs, "no load observed yet")
        replicas = self._clamp(replicas_for(sized_for, obs.capacity, self.target))
        return Decision(
            replicas,
            reason,
            self.name,
            obs.desired,
            obs.capacity,
            inputs={"last_load": obs.last_load},
            forecast=sized_for,
            sized_for=sized_for / self.target,
            horizon_s=steps * obs.step_s,
        )


class StaticPeakPolicy(Policy):
    """Provision for the highest load seen so far at a target utilisation; never scale in."""

    name = "static-peak"
    knob_name = "target utilisation"

    def __init__(
        self,
        target_utilisation: float = TARGET_UTILISATION,
        *,
        min_replicas: int = 1,
        max_replicas: int = 100_000,
    ) -> None:
        super().__init__(min_replicas=max(min_replicas, 1), max_replicas=max_replicas)
        self.target = target_utilisation
        self._peak = math.nan

    @property
    def knob(self) -> float:
        """Target utilisation."""
        return self.target

    def decide(self, obs: Observation) -> Decision:
        """Replicas for the running peak; a new peak raises them, nothing lowers them."""
        if math.isfinite(obs.last_load) and not obs.last_load <= self._peak:
            self._peak = obs.last_load
        if not math.isfinite(self._peak):
            return self._hold(obs, "no load observed yet")
        replicas = max(
            obs.desired, self._clamp(replicas_for(self._peak, obs.capacity, self.target))
        )
        return Decision(
            replicas,
            "peak so far",
            self.name,
            obs.desired,
            obs.capacity,
            inputs={"peak": self._peak},
            forecast=self._peak,
            sized_for=self._peak / self.target,
        )


class OraclePolicy(Policy):
    """Clairvoyant yardstick: exactly ceil(L_t / (C * U*)) replicas, ready at once."""

    name = "oracle"
    knob_name = "target utilisation"
    clairvoyant = True

    def __init__(self, target_utilisation: float = TARGET_UTILISATION) -> None:
        super().__init__(min_replicas=0)
        self.target = target_utilisation

    @property
    def knob(self) -> float:
        """Target utilisation (U*)."""
        return self.target

    def decide(self, obs: Observation) -> Decision:
        """Replicas the current step's load needs at U*."""
        if not math.isfinite(obs.load_now):
            return self._hold(obs, "no load this step")
        replicas = self._clamp(replicas_for(obs.load_now, obs.capacity, self.target))
        return Decision(
            replicas,
            "clairvoyant",
            self.name,
            obs.desired,
            obs.capacity,
            forecast=obs.load_now,
            sized_for=obs.load_now / self.target,
        )


POLICIES: dict[str, type[Policy]] = {
    cls.name: cls
    for cls in (HpaPolicy, PredictivePolicy, SeasonalNaivePolicy, StaticPeakPolicy, OraclePolicy)
}


def make_policy(
    name: str,
    knob: float | None = None,
    *,
    forecaster: Forecaster | None = None,
    **options: Any,
) -> Policy:
    """Build a policy by name at a knob (target utilisation; predictive: its violation budget)."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; choose from {', '.join(POLICIES)}")
    if name == "predictive":
        if knob is not None:
            options = {"budget": knob, **options}
        return PredictivePolicy(forecaster=forecaster, **options)
    factory: Callable[..., Policy] = POLICIES[name]
    return factory(**options) if knob is None else factory(knob, **options)
