"""The live decision engine: one stateful policy and capacity model per application.

The same policy objects the offline evaluator replays (`decision.models`) run here, fed one
`metric-observed` window at a time. State lives in memory and is rebuilt from the stored load
history when a process starts (or after a rolled-back transaction), so a restart decides as if it
had never stopped.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from decision.cmdb import SpecHints
from decision.models import CapacityEstimator, Decision, Observation, Policy, make_policy
from decision.models.capacity import Targets
from ooda.events import MetricObserved

DEFAULT_LATENCY_MS = 500.0  # p99 objective when the spec declares none
OVERLOAD_ERROR_RATE = 0.05  # share of failed requests that means instances are overloaded
NAMESPACE = uuid.UUID("6a1b8f0e-6f7c-4e55-9d0e-0dd0c15e0a11")


def decision_id(app: str, window_end: datetime) -> str:
    """The same window of the same application always gets the same decision id."""
    return str(uuid.uuid5(NAMESPACE, f"{app}|{window_end.isoformat()}"))


UTILISATION_POLICIES = frozenset({"hpa", "seasonal-naive"})
MAX_GAP = timedelta(days=1)  # a longer silence starts the load model afresh


@dataclass
class AppModel:
    """Everything the engine remembers about one application."""

    app: str
    policy: Policy
    rebuild_policy: Callable[[], Policy]
    capacity: CapacityEstimator
    targets: Targets
    delay_s: float
    desired: int | None = None
    last_window_end: datetime | None = None
    observed: int = field(default=0)
    step_s: float = field(default=0.0)
    last_published: datetime | None = None
    hints: SpecHints | None = None  # what the spec said when the model was built
    hints_known: bool = True  # False: built on defaults because the CMDB could not say
    hints_checked: float = 0.0  # monotonic time the spec was last asked for

    def step(self, obs: MetricObserved) -> tuple[Decision, float] | None:
        """Decide for the window after `obs`; None when the window was already seen."""
        if self.last_window_end is not None and obs.window_end <= self.last_window_end:
            return None
        step_s = max((obs.window_end - obs.window_start).total_seconds(), 1.0)
        if self.last_window_end is not None and (
            obs.window_end - self.last_window_end > MAX_GAP
            or not 0.5 <= step_s / self.step_s <= 2.0
        ):
            # A long silence or a new window length: the forecaster's time grid no longer fits
            # (walking it across the gap would take millions of empty steps), so start afresh.
            self.policy = self.rebuild_policy()
        self.step_s = step_s
        self.last_window_end = obs.window_end
        self.observed += 1
        values = obs.values
        load = values.request_rate if values.request_rate is not None else math.nan
        ready = values.ready_instances if values.ready_instances is not None else obs.instance_count
        latency = values.latency_p99_ms
        shedding = (
            values.error_rate is not None
            and values.error_rate > OVERLOAD_ERROR_RATE
            and self.targets.latency_p99_ms is not None
        )
        if shedding and self.targets.latency_p99_ms is not None:
            # Instances shedding load (5xx) are past their capacity whatever their latency says:
            # teach the capacity model a breach at this load per instance.
            latency = max(latency or 0.0, 2 * self.targets.latency_p99_ms)
        estimate = self.capacity.observe(
            load, ready, values.cpu_utilisation, latency, self.targets, shedding=shedding
        )
        desired = self.desired if self.desired is not None else max(ready, 1)
        policy_load = load
        # Load per instance at 100% of the binding limit (CPU or latency), as the policies and
        # the offline simulator define capacity: what one instance serves within the targets,
        # scaled from the CPU target to all of it (the declared capacity, before any data).
        capacity = estimate.per_instance / self.targets.cpu_utilisation
        if self.policy.name == "hpa":
            # The HPA scales on CPU utilisation: the work served over a static request (the
            # declared capacity; it learns nothing), and a saturated instance's CPU follows the
            # work it serves, not the requests it refuses.
            capacity = self.capacity.prior_at_saturation
            if values.error_rate is not None and math.isfinite(load):
                policy_load = load * (1.0 - values.error_rate)
        decision = self.policy.decide(
            Observation(
                timestamp_s=obs.window_end.timestamp(),
                step_s=step_s,
                last_load=policy_load,
                desired=desired,
                ready=ready,
                pending=max(desired - ready, 0),
                capacity=capacity,
                delay_s=self.delay_s,
            )
        )
        self.desired = decision.replicas
        return decision, estimate.per_instance


DROP_GUARD_WINDOWS = 12.0  # predictive: the outage guard holds for this many scale-in windows


def policy_options(policy: str, hints: SpecHints) -> dict[str, Any]:
    """Policy options from the spec's scaling hints.

    - `scale_in_window_s`: how long a lower load must last before a scale-in. The predictive
      policy's outage-guard hold scales with it (by default the window is the provisioning delay,
      at least 300 s, and the hold 2 h), so one declared time constant sets the pace of all of
      its scale-in.
    - `season_s`: how long the load's daily cycle lasts (a day unless the load is replayed faster
      or synthetic): the seasonal forecasts and the day-ago policy follow that cycle.
    """
    options: dict[str, Any] = {}
    window_s = hints.scale_in_window_s
    if policy == "predictive":
        if window_s is not None:
            options |= {"downscale_window_s": window_s, "hold_s": DROP_GUARD_WINDOWS * window_s}
        if hints.season_s is not None:
            options["season_s"] = hints.season_s
    elif policy == "hpa" and window_s is not None:
        options["downscale_window_s"] = window_s
    elif policy == "seasonal-naive" and hints.season_s is not None:
        options["period_s"] = hints.season_s
    return options


class Engine:
    """The per-application models of one decision service process."""

    def __init__(self, default_policy: str, prior_capacity_rps: float, default_delay_s: float):
        self.default_policy = default_policy
        self.prior_capacity_rps = prior_capacity_rps
        self.default_delay_s = default_delay_s
        # App -> spec hints the refresher found changed, for the consumer's next window.
        self.fresh_hints: dict[str, SpecHints | None] = {}
        self.models: dict[str, AppModel] = {}

    def new_model(self, app: str, hints: SpecHints | None, delay_s: float | None) -> AppModel:
        """A fresh model for `app`, shaped by its spec hints (or the defaults)."""
        hints = hints or SpecHints()
        name = hints.policy or self.default_policy

        def build() -> Policy:
            low, high = hints.min_replicas, hints.max_replicas
            # Policies tuned by a target utilisation take the spec's; `predictive` learns its
            # headroom from the application's own history and sizes for capacity at 100%.
            knob = hints.target_utilisation if name in UTILISATION_POLICIES else None
            options = policy_options(name, hints)
            try:
                return make_policy(name, knob, min_replicas=low, max_replicas=high, **options)
            except (ValueError, TypeError):  # unknown, or not usable live (e.g. the oracle)
                return make_policy(self.default_policy, min_replicas=low, max_replicas=high)

        model = AppModel(
            app=app,
            policy=build(),
            rebuild_policy=build,
            capacity=CapacityEstimator(hints.capacity_rps or self.prior_capacity_rps),
            targets=Targets(hints.target_utilisation, hints.latency_p99_ms or DEFAULT_LATENCY_MS),
            delay_s=delay_s or self.default_delay_s,
        )
        self.models[app] = model
        return model

    def forget(self, apps: set[str]) -> None:
        """Drop models whose in-memory state may be ahead of the database (after a rollback)."""
        for app in apps:
            self.models.pop(app, None)
