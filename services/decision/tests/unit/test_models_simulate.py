"""The walk-forward simulator follows the traces README contract, exactly on hand-built cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from decision.models import Decision, Observation, OraclePolicy, Policy, Trace, measure, simulate

pytestmark = pytest.mark.unit


class Scripted(Policy):
    """Asks for a fixed replica count at each step and records what it was shown."""

    name = "scripted"
    knob_name = "none"

    def __init__(self, script: list[int]) -> None:
        super().__init__()
        self.script = script
        self.seen: list[Observation] = []

    @property
    def knob(self) -> float:
        return 0.0

    def decide(self, obs: Observation) -> Decision:
        self.seen.append(obs)
        want = self.script[len(self.seen) - 1]
        return Decision(want, "scripted", self.name, obs.desired, obs.capacity)


def test_u_o_unserved_slack_and_actions_are_exact_on_a_tiny_example() -> None:
    # Peak 30 with P = 3 gives C = 10; the oracle needs ceil(L / 7) = [2, 4, 5, 3, 2] (16).
    trace = Trace("tiny", 0.0, 60.0, np.array([10.0, 25.0, 30.0, 20.0, 10.0]))
    policy = Scripted([2, 3, 3, 2, 2])
    run = simulate(trace, policy, delay_min=1, replicas_at_peak=3)
    # Start at ceil(10 / 7) = 2; the +1 asked at step 1 serves from step 2; the -1 at step 3
    # is immediate.
    assert run.ready.tolist() == [2, 2, 3, 2, 2]
    m = measure(run, "all")
    assert m.saturation == pytest.approx(1 / 5)  # step 1: 25 > 20 (step 2: 30 is not > 30)
    assert m.overprovision == pytest.approx(11 / 16 - 1)
    assert m.unserved_pct == pytest.approx(100 * 5 / 95)
    assert m.slack_pct == pytest.approx(100 * (1 - 90 / 110))
    assert m.actions_per_hour == pytest.approx(2 / (5 / 60))
    assert m.replica_hours == pytest.approx(11 / 60)
    # Walk-forward: at step t the policy saw the load of step t-1 only.
    assert [o.last_load for o in policy.seen][1:] == [10.0, 25.0, 30.0, 20.0]
    assert math.isnan(policy.seen[0].last_load)


def test_oracle_has_no_saturation_and_no_overprovision() -> None:
    rng = np.random.default_rng(2)
    trace = Trace("noisy", 0.0, 60.0, rng.uniform(1, 100, 500))
    run = simulate(trace, OraclePolicy(), delay_min=10)
    for part in ("tuning", "validation", "all"):
        m = measure(run, part)
        assert m.saturation == 0.0 and m.overprovision == pytest.approx(0.0)


def test_replicas_arriving_mid_step_serve_pro_rata() -> None:
    # 5-minute steps and a 1-minute delay: replicas asked at step 1 serve 4/5 of step 1.
    trace = Trace("slow-steps", 0.0, 300.0, np.array([7.0, 7.0, 7.0]))
    run = simulate(trace, Scripted([1, 6, 6]), delay_min=1, replicas_at_peak=1)
    assert run.ready.tolist() == pytest.approx([1.0, 1.0 + 5 * 0.8, 6.0])


def test_scale_in_cancels_replicas_still_provisioning_first() -> None:
    trace = Trace("cancel", 0.0, 60.0, np.full(6, 7.0))
    run = simulate(trace, Scripted([1, 5, 3, 3, 3, 3]), delay_min=3, replicas_at_peak=1)
    # 4 asked at step 1 (ready at 4); 2 of them cancelled at step 2; the ready one keeps serving.
    assert run.ready.tolist() == [1, 1, 1, 1, 3, 3]


def test_gaps_are_left_out_of_the_metrics_not_counted_as_zero() -> None:
    values = np.array([10.0, math.nan, 10.0, 10.0])
    run = simulate(Trace("gappy", 0.0, 60.0, values), Scripted([1, 1, 1, 1]), 1, replicas_at_peak=1)
    m = measure(run, "all")
    assert m.steps == 3
    assert m.saturation == 0.0  # a zero load at the gap would not change this, but O would:
    assert m.overprovision == pytest.approx(3 / (3 * math.ceil(10 / 7)) - 1)
