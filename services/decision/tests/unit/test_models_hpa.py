"""The hpa policy reproduces the Kubernetes HPA algorithm on worked examples."""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pytest

from decision.models import Decision, HpaPolicy, Observation, Policy, Trace, simulate

pytestmark = pytest.mark.unit


def obs(
    t: float, load: float, current: int, ready: int | None = None, step: float = 15.0
) -> Observation:
    ready = current if ready is None else ready
    return Observation(t, step, load, current, ready, current - ready, capacity=1.0, delay_s=60.0)


def test_no_change_while_the_utilisation_ratio_is_within_the_tolerance() -> None:
    hpa = HpaPolicy(0.5)
    # 10 pods at 54% against a 50% target: ratio 1.08 is within 0.1 of 1.
    assert hpa.decide(obs(0, 5.4, 10)).replicas == 10
    # 10 pods at 44%: ratio 0.88 is outside it, but scale-down would be stabilised; a fresh hpa
    # with no history still records only this recommendation, so it scales to ceil(0.88 * 10).
    assert HpaPolicy(0.5).decide(obs(0, 4.4, 10)).replicas == 9


def test_desired_is_ceil_of_current_times_metric_over_target() -> None:
    # 4 pods at 90% against 60%: ceil(4 * 1.5) = 6.
    assert HpaPolicy(0.6).decide(obs(0, 3.6, 4)).replicas == 6
    # Utilisation is an integer percent, as the resource metrics API reports it: 3 pods carrying
    # 2.0999 units are at 69%, ratio 69/50 = 1.38, ceil(3 * 1.38) = ceil(4.14) = 5.
    assert HpaPolicy(0.5).decide(obs(0, 2.0999, 3)).replicas == 5


def test_scale_up_is_limited_to_double_or_four_more_pods_per_sync() -> None:
    # One 15 s sync: from 2 pods the limit is max(2 * 2, 2 + 4) = 6; from 10 it is 20.
    assert HpaPolicy(0.5).decide(obs(0, 100.0, 2)).replicas == 6
    assert HpaPolicy(0.5).decide(obs(0, 100.0, 10)).replicas == 20
    # A 60 s trace step holds four syncs on the same metric: 1 -> 5 -> 10 -> 20 -> 40.
    assert HpaPolicy(0.5).decide(obs(0, 100.0, 1, step=60.0)).replicas == 40


def test_pods_still_starting_count_as_idle_so_a_scale_up_is_not_repeated() -> None:
    hpa = HpaPolicy(0.5)
    # 4 ready pods at 100% want 8; 8 are already requested (4 starting): nothing more to do.
    assert hpa.decide(obs(0, 4.0, 8, ready=4)).replicas == 8
    # With 6 requested, the 2 starting ones count as idle: 4 units over 6 pods is 66%, ratio
    # 1.33, so ceil(1.33 * 6) = 8.
    assert HpaPolicy(0.5).decide(obs(0, 4.0, 6, ready=4)).replicas == 8


def test_scale_down_waits_for_the_highest_recommendation_of_the_last_300_seconds() -> None:
    hpa = HpaPolicy(0.5)
    current = 10
    current = hpa.decide(obs(0, 5.0, current, step=60.0)).replicas  # at target: recommends 10
    assert current == 10
    seen = []
    for t in range(60, 420, 60):  # load halves: each sync recommends 5
        current = hpa.decide(obs(t, 2.5, current, step=60.0)).replicas
        seen.append((t, current))
    # The last "10" was recorded at the sync of 45 s; it leaves the window at 345 s, which is the
    # last sync of the step starting at 300 s.
    assert seen == [(60, 10), (120, 10), (180, 10), (240, 10), (300, 5), (360, 5)]


def test_scale_up_is_immediate_even_inside_the_window() -> None:
    hpa = HpaPolicy(0.5)
    assert hpa.decide(obs(0, 5.0, 10, step=60.0)).replicas == 10
    assert hpa.decide(obs(60, 2.5, 10, step=60.0)).replicas == 10  # held by the window
    assert hpa.decide(obs(120, 7.5, 10, step=60.0)).replicas == 15


def test_a_missing_metric_skips_the_sync() -> None:
    decision = HpaPolicy(0.5).decide(obs(0, math.nan, 7))
    assert decision.replicas == 7 and "no metric" in decision.reason


class ReferenceHpa(Policy):
    """The HPA written as literally as possible: every sync, a full scan of all recommendations."""

    name = "reference-hpa"
    knob_name = "target utilisation"

    def __init__(self, target: float) -> None:
        super().__init__()
        self.target_pct = round(100 * target)
        self.recs: deque[tuple[float, int]] = deque()

    @property
    def knob(self) -> float:
        return self.target_pct / 100

    def decide(self, o: Observation) -> Decision:
        current = o.desired
        if not math.isfinite(o.last_load):
            return Decision(current, "hold", self.name, current, o.capacity)
        for k in range(round(o.step_s / 15.0)):
            now = o.timestamp_s + 15.0 * k
            unready = current - o.ready
            util = math.floor(100 * o.last_load / (o.capacity * o.ready) + 1e-9)
            ratio = util / self.target_pct
            if unready == 0 or ratio <= 1:
                raw = current if abs(1 - ratio) <= 0.1 else math.ceil(ratio * o.ready - 1e-9)
            else:
                util_all = math.floor(100 * o.last_load / (o.capacity * current) + 1e-9)
                new_ratio = util_all / self.target_pct
                if abs(1 - new_ratio) <= 0.1 or new_ratio < 1:
                    raw = current
                else:
                    raw = max(math.ceil(new_ratio * current - 1e-9), current)
            window = [r for t, r in self.recs if t > now - 300.0]
            self.recs.append((now, raw))
            rec = min(max(current, raw), max([raw, *window]))
            limit = max(math.ceil(current * 2 - 1e-9), current + 4)
            current = max(1, min(rec, limit))
        return Decision(current, "reference", self.name, o.desired, o.capacity)


def test_short_live_windows_sync_once_per_period_on_the_mean_of_the_last_15_seconds() -> None:
    hpa = HpaPolicy(0.5)
    # 2-s windows: the first one syncs (nothing measured before it), on its own load.
    assert hpa.decide(obs(0, 2.0, 4, step=2.0)).replicas == 4
    # A step to 8 (16 pods' worth) waits for the next sync, 15 s after the last.
    held = [hpa.decide(obs(t, 8.0, 4, step=2.0)) for t in range(2, 14, 2)]
    assert [d.replicas for d in held] == [4] * 6
    assert {d.reason for d in held} == {"between syncs"}
    synced = hpa.decide(obs(14, 8.0, 4, step=2.0))
    # Synced on the mean of the windows in the last 15 s (1 at 2.0, 7 at 8.0: 7.25 = 3.6x the
    # target over 4 pods = 15), then limited to +4 pods (double is 8).
    assert synced.inputs["raw"] == 15 and synced.replicas == 8


def test_the_fast_emulation_matches_a_literal_one_on_a_noisy_series() -> None:
    rng = np.random.default_rng(7)
    t = np.arange(800)
    load = 50 + 40 * np.sin(2 * np.pi * t / 300) + rng.normal(0, 6, t.size)
    load[rng.integers(0, t.size, 10)] *= 3  # bursts
    trace = Trace("noisy", 0.0, 60.0, np.maximum(load, 1.0))
    for delay in (1.0, 3.0):
        fast = simulate(trace, HpaPolicy(0.6), delay)
        slow = simulate(trace, ReferenceHpa(0.6), delay)
        assert np.array_equal(fast.desired, slow.desired)
