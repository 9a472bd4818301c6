"""Applying policy to a decision: every clipping rule, budget exhaustion, and the reasons recorded."""

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from elastic.domain import (
    BudgetUsage,
    Clip,
    CurrentState,
    Decision,
    Rule,
    ScalingPolicy,
    TeamBudget,
    apply_policy,
)

pytestmark = pytest.mark.unit

NOW = datetime(2025, 3, 12, 10, 0, tzinfo=UTC)
POLICY = ScalingPolicy(
    app_id="web",
    team="payments",
    min_replicas=2,
    max_replicas=20,
    scale_up_cooldown=timedelta(seconds=60),
    scale_down_cooldown=timedelta(seconds=300),
    max_step_up=4,
    max_step_down=2,
    max_actions_per_hour=3,
)
ROOMY = {"a": 50, "b": 50}


def state(a: int = 2, b: int = 2, *actions_ago: timedelta) -> CurrentState:
    return CurrentState(
        app_id="web",
        replicas_by_zone={zone: n for zone, n in (("a", a), ("b", b)) if n},
        action_times=tuple(NOW - ago for ago in actions_ago),
    )


def decide(replicas: int) -> Decision:
    return Decision(app_id="web", desired_replicas=replicas, reasons=("forecast p90 says so",))


def budget(used: float, limit: float = 200, other: int = 2) -> BudgetUsage:
    # A daily budget: at NOW (10:00 UTC) 14 hours of the period are left.
    return BudgetUsage(
        budget=TeamBudget(team="payments", period="day", limit=limit),
        used_replica_hours=used,
        other_replicas=other,
    )


def test_a_decision_within_every_limit_is_requested_as_is_and_spread_over_zones() -> None:
    outcome = apply_policy(decide(6), state(), POLICY, None, ROOMY, NOW)

    assert (outcome.action, outcome.final_replicas, outcome.clipped_by) == ("scale_up", 6, ())
    assert outcome.placement == {"a": 3, "b": 3}
    assert outcome.decision_reasons == ("forecast p90 says so",)


def test_a_decision_above_max_is_clipped_to_max_and_then_by_the_step_limit() -> None:
    outcome = apply_policy(decide(30), state(), POLICY, None, ROOMY, NOW)

    assert outcome.clipped_by == (
        Clip(
            rule=Rule.BOUNDS,
            from_replicas=30,
            to_replicas=20,
            reason="policy allows 2..20 replicas",
        ),
        Clip(rule=Rule.STEP, from_replicas=20, to_replicas=8, reason="scale-up step limited to 4"),
    )
    assert outcome.final_replicas == 8


def test_a_decision_below_min_is_raised_to_min() -> None:
    outcome = apply_policy(decide(0), state(2, 2), POLICY, None, ROOMY, NOW)

    assert outcome.final_replicas == 2
    assert [c.rule for c in outcome.clipped_by] == [Rule.BOUNDS]
    assert outcome.placement == {"a": 1, "b": 1}


def test_a_scale_up_inside_the_cooldown_is_held_with_the_reason() -> None:
    outcome = apply_policy(decide(6), state(2, 2, timedelta(seconds=30)), POLICY, None, ROOMY, NOW)

    assert outcome.action == "hold"
    assert outcome.final_replicas == 4
    assert outcome.clipped_by == (
        Clip(
            rule=Rule.COOLDOWN,
            from_replicas=6,
            to_replicas=4,
            reason="last scale action 30s ago, scale-up cooldown is 60s",
        ),
    )
    assert outcome.hold_reason == "last scale action 30s ago, scale-up cooldown is 60s"


def test_scale_down_has_its_own_longer_cooldown() -> None:
    recently = timedelta(seconds=200)

    down = apply_policy(decide(3), state(2, 2, recently), POLICY, None, ROOMY, NOW)
    up = apply_policy(decide(5), state(2, 2, recently), POLICY, None, ROOMY, NOW)

    assert (down.action, down.hold_reason) == (
        "hold",
        "last scale action 200s ago, scale-down cooldown is 300s",
    )
    assert (up.action, up.final_replicas) == ("scale_up", 5)


def test_a_cooldown_never_keeps_the_application_below_min() -> None:
    outcome = apply_policy(decide(5), state(1, 0, timedelta(seconds=10)), POLICY, None, ROOMY, NOW)

    assert (outcome.action, outcome.final_replicas) == ("scale_up", 2)
    assert outcome.clipped_by[0].rule == Rule.COOLDOWN
    assert outcome.clipped_by[0].to_replicas == 2


def test_too_many_actions_in_the_last_hour_hold_the_change() -> None:
    actions = (
        timedelta(minutes=50),
        timedelta(minutes=40),
        timedelta(minutes=30),
        timedelta(hours=2),
    )

    outcome = apply_policy(decide(6), state(2, 2, *actions), POLICY, None, ROOMY, NOW)

    assert outcome.action == "hold"
    assert outcome.clipped_by[-1].rule == Rule.RATE_LIMIT
    assert outcome.hold_reason == "3 scale actions in the last hour, limit 3"


def test_actions_older_than_an_hour_do_not_count_toward_the_rate_limit() -> None:
    actions = (timedelta(minutes=50), timedelta(minutes=40), timedelta(minutes=61))

    outcome = apply_policy(decide(6), state(2, 2, *actions), POLICY, None, ROOMY, NOW)

    assert outcome.action == "scale_up"


def test_a_scale_down_is_limited_to_the_maximum_step() -> None:
    outcome = apply_policy(decide(2), state(5, 5), POLICY, None, ROOMY, NOW)

    assert outcome.clipped_by == (
        Clip(rule=Rule.STEP, from_replicas=2, to_replicas=8, reason="scale-down step limited to 2"),
    )
    assert outcome.placement == {"a": 4, "b": 4}


def test_a_scale_up_beyond_the_remaining_budget_is_clipped_to_what_the_team_can_afford() -> None:
    policy = POLICY.model_copy(update={"max_step_up": 20})

    outcome = apply_policy(decide(12), state(), policy, budget(used=60), ROOMY, NOW)

    # 140 replica-hours over 14 hours is 10 replicas; the team's other apps run 2 of them.
    assert outcome.final_replicas == 8
    assert outcome.clipped_by == (
        Clip(
            rule=Rule.BUDGET,
            from_replicas=12,
            to_replicas=8,
            reason="team payments has 140.0 replica-hours left until 2025-03-13T00:00:00+00:00, "
            "enough for 8 replicas of this application",
        ),
    )


def test_an_exhausted_budget_holds_a_scale_up_at_the_current_count() -> None:
    outcome = apply_policy(decide(8), state(), POLICY, budget(used=200), ROOMY, NOW)

    assert (outcome.action, outcome.final_replicas) == ("hold", 4)
    assert outcome.clipped_by[-1].rule == Rule.BUDGET
    assert outcome.hold_reason is not None and "enough for 0 replicas" in outcome.hold_reason


def test_an_exhausted_budget_never_keeps_the_application_below_min_and_says_so() -> None:
    outcome = apply_policy(decide(5), state(0, 0), POLICY, budget(used=200), ROOMY, NOW)

    assert (outcome.action, outcome.final_replicas) == ("scale_up", 2)
    assert outcome.clipped_by[-1].rule == Rule.BUDGET
    assert outcome.clipped_by[-1].reason.endswith("; kept at min replicas 2")


def test_the_budget_never_stops_a_scale_down() -> None:
    outcome = apply_policy(decide(3), state(), POLICY, budget(used=500), ROOMY, NOW)

    assert (outcome.action, outcome.final_replicas, outcome.clipped_by) == ("scale_down", 3, ())


def test_a_scale_up_beyond_free_capacity_is_clipped_to_what_fits() -> None:
    outcome = apply_policy(decide(8), state(), POLICY, None, {"a": 1, "b": 0}, NOW)

    assert outcome.final_replicas == 5
    assert outcome.clipped_by == (
        Clip(
            rule=Rule.CAPACITY,
            from_replicas=8,
            to_replicas=5,
            reason="only 5 instances fit (zones: a, b)",
        ),
    )
    assert outcome.placement == {"a": 3, "b": 2}


def test_a_scale_up_that_would_skew_the_zones_is_clipped_by_the_spread_rule() -> None:
    outcome = apply_policy(decide(8), state(), POLICY, None, {"a": 10, "b": 0}, NOW)

    assert outcome.final_replicas == 5
    assert [(c.rule, c.to_replicas, c.reason) for c in outcome.clipped_by] == [
        (Rule.SPREAD, 5, "zone b is full at 2 and max skew is 1")
    ]


def test_capacity_short_of_min_replicas_is_said_in_the_reason() -> None:
    outcome = apply_policy(decide(3), state(0, 0), POLICY, None, {"a": 1}, NOW)

    assert outcome.final_replicas == 1
    assert outcome.clipped_by[-1].reason == "only 1 instances fit (zones: a); below min replicas 2"


def test_a_decision_equal_to_the_current_count_holds() -> None:
    outcome = apply_policy(decide(4), state(), POLICY, None, ROOMY, NOW)

    assert (outcome.action, outcome.hold_reason, outcome.placement) == (
        "hold",
        "already at 4 replicas",
        {"a": 2, "b": 2},
    )


def test_a_decision_above_max_while_at_max_holds_because_of_the_bounds() -> None:
    outcome = apply_policy(decide(25), state(10, 10), POLICY, None, ROOMY, NOW)

    assert (outcome.action, outcome.hold_reason) == ("hold", "policy allows 2..20 replicas")


def test_a_decision_for_another_application_is_refused() -> None:
    with pytest.raises(ValueError, match="disagree on the application"):
        apply_policy(Decision(app_id="api", desired_replicas=3), state(), POLICY, None, ROOMY, NOW)


def test_a_policy_with_min_above_max_is_refused_with_the_reason() -> None:
    with pytest.raises(ValidationError, match="min_replicas 5 is above max_replicas 3"):
        ScalingPolicy(app_id="web", team="payments", min_replicas=5, max_replicas=3)
