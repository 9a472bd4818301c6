"""Scaling policies behind one interface: `decide(observation) -> Decision` (replicas and why).

Every policy is a stateful object fed one `Observation` per step, in time order, holding only what
was known at the start of that step (the previous step's load and the replica state). The same
objects run live and in the offline simulator. Each has one aggressiveness knob for the sweep:

- `hpa`: the Kubernetes HorizontalPodAutoscaler with its defaults; knob: target utilisation;
- `predictive`: sizes for a forecast quantile at the provisioning horizon with a reactive floor,
  a drop guard, hysteresis and scale-down stabilisation; knob: `Headroom` (quantile and margin);
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


@dataclass(frozen=True)
class Headroom:
    """Predictive aggressiveness: forecast quantile sized for, plus a multiplicative margin."""

    quantile: float
    margin: float

    @property
    def level(self) -> float:
        """A single number that orders settings from lean to safe (for tables and plots)."""
        return round(self.quantile + self.margin, 4)


class PredictivePolicy(Policy):
    """Size for a forecast quantile at the provisioning horizon, never below current load's needs.

    sized for = max(max(forecast at `quantile` over the next D + 1 steps, last load)
                    * (1 + margin) * (1 + warm-up margin while history is short), drop guard);
    the forecast covers the ramp until new replicas serve; the reactive floor covers what the
    forecast misses (flash crowds, too little history); the drop guard keeps most of the capacity
    for a while after the load collapses, because an outage upstream usually ends with all the
    traffic coming back at once, faster than replicas start.

    Against flapping: a change goes to the target plus `up_buffer`; scale-in waits until the target
    has stayed lower for the whole `downscale_window_s` and frees more than `hysteresis` of the
    replicas. Scale-out is immediate.
    """

    name = "predictive"
    knob_name = "headroom (quantile + margin)"

    def __init__(
        self,
        quantile: float = 0.9,
        margin: float = 0.1,
        *,
        forecaster: Forecaster | None = None,
        downscale_window_s: float = 900.0,
        hysteresis: float = 0.12,
        up_buffer: float = 0.05,
        warmup_margin: float = 0.5,
        collapse_window_s: float = 900.0,
        collapse_ratio: float = 0.5,
        hold_fraction: float = 0.9,
        hold_s: float = 3 * 3600.0,
        season_s: float = 86400.0,
        min_replicas: int = 1,
        max_replicas: int = 100_000,
    ) -> None:
        super().__init__(min_replicas=max(min_replicas, 1), max_replicas=max_replicas)
        if not 0 < quantile < 1 or margin < -0.5:
            raise ValueError("quantile must be in (0, 1) and margin above -0.5")
        self.quantile = quantile
        self.margin = margin
        self.forecaster = forecaster
        self.window_s = downscale_window_s
        self.hysteresis = hysteresis
        self.up_buffer = up_buffer
        self.warmup_margin = warmup_margin
        self.collapse_window_s = collapse_window_s
        self.collapse_ratio = collapse_ratio
        self.hold_fraction = hold_fraction
        self.hold_s = hold_s
        # The forecaster models a daily cycle: a load whose cycle lasts `season_s` (a replay
        # sped up, a synthetic test) is fed to it on a clock where that cycle lasts a day.
        self.clock = 86400.0 / season_s
        self._targets: deque[tuple[float, int]] = deque()  # decreasing recent targets
        self._peaks: deque[tuple[float, float]] = deque()  # decreasing sliding max of the load
        self._last3: deque[float] = deque(maxlen=3)
        self._guard = 0.0  # load the drop guard keeps capacity for
        self._guard_until = -math.inf
        self._last_valid = math.nan

    @property
    def knob(self) -> float:
        """Headroom level: quantile plus margin."""
        return Headroom(self.quantile, self.margin).level

    def _with_buffer(self, target: int) -> int:
        """Replicas for a target plus the scale-out buffer, within bounds."""
        return self._clamp(math.ceil(target * (1 + self.up_buffer) - _EPS))

    def _drop_guard(self, now: float, load: float) -> float:
        """Load to keep capacity for after a collapse (0 when none is in force)."""
        if self.collapse_window_s <= 0:
            return 0.0
        peaks = self._peaks
        if math.isfinite(load):
            # The peak is taken over a 3-step median, so a one-step spike that falls back is not
            # mistaken for a level that collapsed.
            self._last3.append(load)
            level = sorted(self._last3)[len(self._last3) // 2]
            while peaks and peaks[-1][1] <= level:
                peaks.pop()
            peaks.append((now, level))
        while peaks and peaks[0][0] <= now - self.collapse_window_s:
            peaks.popleft()
        if now >= self._guard_until:
            self._guard = 0.0
        peak = peaks[0][1] if peaks else 0.0
        if math.isfinite(load) and load < self.collapse_ratio * peak:
            held = self.hold_fraction * peak
            if held >= self._guard:  # a deeper or new collapse restarts the hold
                self._guard, self._guard_until = held, now + self.hold_s
        return self._guard

    def decide(self, obs: Observation) -> Decision:
        """Forecast-driven replica count with a reactive floor and damped scale-down."""
        steps = horizon_steps(obs.delay_s, obs.step_s)
        if self.forecaster is None:
            # Live default: forecast far enough for this delay (plus slack for a slower one).
            self.forecaster = SeasonalForecaster(obs.step_s * self.clock, max(steps, 2) * 2)
        f = self.forecaster
        f.observe((obs.timestamp_s - obs.step_s) * self.clock, obs.last_load)
        now = obs.timestamp_s
        if math.isfinite(obs.last_load):
            self._last_valid = obs.last_load
        need_guard = self._drop_guard(now, obs.last_load)
        steps = min(steps, f.horizon)
        cover = float(f.upper(self.quantile)[:steps].max())  # NaN while nothing is known
        central = f.point()[:steps]
        floor = self._last_valid
        if not math.isfinite(cover) and not math.isfinite(floor):
            return self._hold(obs, "no load observed yet")
        # Little history means an untested forecast: widen the margin until it has seen enough days.
        warmup = 1.0 + self.warmup_margin * (1.0 - f.maturity())
        scale = (1.0 + self.margin) * warmup
        need_forecast = cover * scale if math.isfinite(cover) else 0.0
        need_floor = floor * scale if math.isfinite(floor) else 0.0
        sized_for = max(need_forecast, need_floor, need_guard)
        target = self._clamp(replicas_for(sized_for, obs.capacity, 1.0))
        # Sliding maximum of the targets over the scale-in window (front = highest).
        targets = self._targets
        while targets and targets[0][0] <= now - self.window_s:
            targets.popleft()
        while targets and targets[-1][1] <= target:
            targets.pop()
        targets.append((now, target))
        current = obs.desired
        if need_guard >= max(need_forecast, need_floor):
            driver = "drop guard"
        elif need_forecast >= need_floor:
            driver = "forecast"
        else:
            driver = "reactive floor"
        if target > current:
            new = self._with_buffer(target)
            reason = f"scale-up: {driver} (q={self.quantile}, {steps} steps ahead)"
        else:
            # Scale in to the highest target of the window plus the same buffer as a scale-out (so
            # the next small rise does not scale out again at once), and only when that frees more
            # than the hysteresis band: small wobbles never move the replica count.
            settled = self._with_buffer(targets[0][1])
            if current - settled >= max(1.0, self.hysteresis * current):
                new, reason = settled, f"scale-down: {driver} stayed lower through the window"
            else:
                new, reason = current, "hold: within hysteresis or stabilisation window"
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
                "floor_load": need_floor,
                "guard_load": need_guard,
                "margin": self.margin,
                "warmup_factor": warmup,
            },
            forecast=float(central[-1]) if central.size else math.nan,
            sized_for=sized_for,
            quantile=self.quantile,
            horizon_s=steps * obs.step_s,
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
    knob: float | Headroom | None = None,
    *,
    forecaster: Forecaster | None = None,
    **options: Any,
) -> Policy:
    """Build a policy by name at a knob (target utilisation, or `Headroom` for predictive)."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; choose from {', '.join(POLICIES)}")
    if name == "predictive":
        headroom = knob if isinstance(knob, Headroom) else None
        if headroom is None and knob is not None:
            raise ValueError("predictive takes a Headroom(quantile, margin) knob")
        if headroom is not None:
            options = {"quantile": headroom.quantile, "margin": headroom.margin, **options}
        return PredictivePolicy(forecaster=forecaster, **options)
    if isinstance(knob, Headroom):
        raise ValueError(f"{name} takes a target utilisation knob")
    factory: Callable[..., Policy] = POLICIES[name]
    return factory(**options) if knob is None else factory(knob, **options)
