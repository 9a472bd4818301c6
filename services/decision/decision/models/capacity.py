"""Per-application capacity: how much load one instance serves while CPU and latency targets hold.

`CapacityEstimator` learns online from what the monitor reports (load, instances, CPU utilisation,
p99 latency) and starts from a prior so it gives a usable answer before any data:

- CPU: a forgetting, ridge-regularised regression of CPU utilisation on load per instance,
  `cpu = idle + slope * load_per_instance`, shrunk toward the prior slope; the CPU-limited capacity
  is the load per instance at which the regression reaches the CPU target;
- latency: the lowest load per instance at which p99 latency broke its target, remembered with
  decay, caps the capacity (with a small safety factor), because latency usually breaks before CPU
  says so when the bottleneck is elsewhere (locks, I/O, a downstream dependency). A breach counts
  only while instances carry at least `latency_min_share` of their CPU-limited capacity, or shed
  load: below that they are idle, and a slow p99 says more about the host (a pause, a neighbour,
  a warm-up) than about load; learnt from, it once cut an idle application's capacity twentyfold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Targets:
    """Service-level targets an instance must hold: CPU utilisation share and p99 latency (ms)."""

    cpu_utilisation: float = 0.7
    latency_p99_ms: float | None = None


@dataclass(frozen=True)
class CapacityEstimate:
    """Load one instance serves within targets, how much data backs it and what limits it."""

    per_instance: float  # within every target: CPU at its target share, latency within its SLO
    at_saturation: float  # load per instance at 100% CPU (what the simulator calls C)
    observations: int
    limited_by: str  # "prior", "cpu" or "latency"
    cpu_slope: float
    cpu_idle: float


class CapacityEstimator:
    """Online estimator of per-instance capacity from load, instances, CPU and latency."""

    def __init__(
        self,
        prior_at_saturation: float,
        *,
        prior_weight: float = 20.0,
        forgetting: float = 0.995,
        latency_safety: float = 0.95,
        latency_memory: float = 0.999,
        latency_min_share: float = 0.5,
    ) -> None:
        if prior_at_saturation <= 0:
            raise ValueError("prior capacity per instance must be positive")
        # The declared capacity (a spec's `capacity_rps`): the load one instance serves at 100%,
        # the most it takes before it refuses requests (as the sample workload does).
        self.prior_at_saturation = prior_at_saturation
        self.prior_weight = prior_weight
        self.forgetting = forgetting
        self.latency_safety = latency_safety
        self.latency_memory = latency_memory
        self.latency_min_share = latency_min_share
        # Weighted sums of the regression cpu = idle + slope * x (x: load per instance).
        self._sw = self._sx = self._sy = self._sxx = self._sxy = 0.0
        self._count = 0
        self._breach_load = math.inf  # lowest load per instance seen breaking the latency target
        self._targets = Targets()

    def observe(
        self,
        load: float,
        instances: int,
        cpu_util: float | None,
        latency_p99: float | None,
        targets: Targets,
        *,
        shedding: bool = False,
    ) -> CapacityEstimate:
        """Learn from one window of telemetry and return the updated per-instance capacity.

        `shedding`: the instances refused load (5xx), so a breach counts however idle they look.
        """
        self._targets = targets
        if instances <= 0 or not math.isfinite(load) or load < 0:
            return self.estimate()  # no instance or no load reading: nothing to learn from
        x = load / instances
        if cpu_util is not None and math.isfinite(cpu_util) and cpu_util >= 0:
            f = self.forgetting
            self._sw = f * self._sw + 1.0
            self._sx = f * self._sx + x
            self._sy = f * self._sy + cpu_util
            self._sxx = f * self._sxx + x * x
            self._sxy = f * self._sxy + x * cpu_util
            self._count += 1
        if (
            latency_p99 is not None
            and targets.latency_p99_ms is not None
            and math.isfinite(latency_p99)
        ):
            # Relax the remembered breach point slowly, so one bad minute long ago stops binding.
            self._breach_load /= self.latency_memory
            busy = shedding or x >= self.latency_min_share * self._cpu_limit()[0]
            if latency_p99 > targets.latency_p99_ms and x > 0 and busy:
                self._breach_load = min(self._breach_load, x)
        return self.estimate()

    def _fit(self) -> tuple[float, float]:
        """Idle CPU and CPU per unit of load per instance, shrunk toward the prior."""
        target = self._targets.cpu_utilisation
        prior_slope = 1.0 / self.prior_at_saturation
        lam = self.prior_weight
        # The prior is pseudo-observations on the line of the declared capacity (all the CPU at
        # that load): CPU at its target when load per instance is that share of the capacity
        # (weight `lam`) and no CPU at no load (weight `lam/4`); they keep the line identifiable
        # when load per instance barely varies, and real data outweighs them quickly.
        x0 = target * self.prior_at_saturation
        sw = self._sw + 1.25 * lam
        sx = self._sx + lam * x0
        sy = self._sy + lam * prior_slope * x0
        sxx = self._sxx + lam * x0 * x0
        sxy = self._sxy + lam * x0 * prior_slope * x0
        det = sw * sxx - sx * sx
        if det <= 1e-12 * max(sw * sxx, 1e-300):
            slope = sy / sx if sx > 0 else prior_slope
            return 0.0, slope
        slope = (sw * sxy - sx * sy) / det
        idle = (sy - slope * sx) / sw
        return idle, slope

    def _cpu_limit(self) -> tuple[float, float, str, float, float]:
        """Load per instance at the CPU target and at 100% CPU, their source, slope and idle."""
        idle, slope = self._fit()
        target = self._targets.cpu_utilisation
        if self._count == 0 or slope <= 0 or target <= idle:
            saturation = self.prior_at_saturation
            return target * saturation, saturation, "prior", slope, idle
        return (target - idle) / slope, (1.0 - idle) / slope, "cpu", slope, idle

    def estimate(self) -> CapacityEstimate:
        """Per-instance capacity now: the lower of the CPU and latency limits (prior if no data)."""
        cpu_cap, saturation, source, slope, idle = self._cpu_limit()
        latency_cap = self.latency_safety * self._breach_load
        if latency_cap < cpu_cap:
            return CapacityEstimate(latency_cap, saturation, self._count, "latency", slope, idle)
        return CapacityEstimate(cpu_cap, saturation, self._count, source, slope, idle)
