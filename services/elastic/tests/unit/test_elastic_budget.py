"""Budgets: periods, replica-hours from replica-count samples (idempotent on replay), affordability."""

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from elastic.domain import (
    BudgetUsage,
    ReplicaSample,
    TeamBudget,
    UsageTimeline,
    period_bounds,
    used_replica_hours,
)

pytestmark = pytest.mark.unit

T0 = datetime(2025, 3, 12, 10, 0, tzinfo=UTC)  # a Wednesday


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def test_budget_periods_are_the_utc_day_week_and_month_containing_now() -> None:
    assert period_bounds("day", T0) == (
        datetime(2025, 3, 12, tzinfo=UTC),
        datetime(2025, 3, 13, tzinfo=UTC),
    )
    assert period_bounds("week", T0) == (
        datetime(2025, 3, 10, tzinfo=UTC),
        datetime(2025, 3, 17, tzinfo=UTC),
    )
    assert period_bounds("month", T0) == (
        datetime(2025, 3, 1, tzinfo=UTC),
        datetime(2025, 4, 1, tzinfo=UTC),
    )
    assert period_bounds("month", datetime(2025, 12, 31, 23, tzinfo=UTC))[1] == datetime(
        2026, 1, 1, tzinfo=UTC
    )


def test_a_cost_budget_is_converted_to_replica_hours() -> None:
    budget = TeamBudget(team="payments", unit="cost", limit=300.0, cost_per_replica_hour=0.5)

    assert budget.limit_replica_hours == 600.0


def test_a_negative_budget_is_refused() -> None:
    with pytest.raises(ValidationError):
        TeamBudget(team="payments", limit=-1)


def timeline(*samples: tuple[float, int]) -> UsageTimeline:
    result = UsageTimeline(app_id="web")
    for hours, replicas in samples:
        result = result.record(ReplicaSample(at=at(hours), replicas=replicas))
    return result


def test_replica_hours_integrate_the_replica_count_over_time() -> None:
    usage = timeline((0, 2), (1, 4), (1.5, 0), (3, 1))

    # 2 for 1h, 4 for 0.5h, 0 for 1.5h, then 1 until 4h
    assert usage.replica_hours(at(0), at(4)) == pytest.approx(2 + 2 + 0 + 1)


def test_replica_hours_count_only_the_window_asked_for() -> None:
    usage = timeline((0, 2), (1, 4))

    assert usage.replica_hours(at(-5), at(0)) == 0
    assert usage.replica_hours(at(0.5), at(2)) == pytest.approx(1 + 4)


def test_an_application_without_samples_used_nothing() -> None:
    assert UsageTimeline(app_id="web").replica_hours(at(0), at(4)) == 0


def test_replaying_the_same_sample_changes_nothing() -> None:
    usage = timeline((0, 2), (1, 4))

    again = usage.record(ReplicaSample(at=at(1), replicas=4))

    assert again == usage
    assert again.replica_hours(at(0), at(2)) == pytest.approx(6)


def test_samples_arriving_out_of_order_account_the_same() -> None:
    in_order = timeline((0, 2), (1, 4), (2, 1))
    shuffled = timeline((2, 1), (0, 2), (1, 4), (0, 2))

    assert shuffled == in_order


def test_two_reports_for_the_same_instant_keep_the_larger_count_in_any_order() -> None:
    assert timeline((0, 2), (0, 5)) == timeline((0, 5), (0, 2))
    assert timeline((0, 2), (0, 5)).samples == (ReplicaSample(at=at(0), replicas=5),)


def test_a_teams_usage_sums_its_applications_since_the_period_started() -> None:
    start = datetime(2025, 3, 12, tzinfo=UTC)
    web = UsageTimeline(app_id="web").record(
        ReplicaSample(at=start - timedelta(hours=2), replicas=3)
    )
    api = UsageTimeline(app_id="api").record(
        ReplicaSample(at=start + timedelta(hours=4), replicas=2)
    )

    # web: 3 replicas for the 10h since midnight; api: 2 replicas for 6h
    assert used_replica_hours([web, api], "day", T0) == pytest.approx(30 + 12)


def test_affordable_replicas_spread_the_remaining_budget_over_the_hours_left() -> None:
    usage = BudgetUsage(
        budget=TeamBudget(team="payments", period="day", limit=200),
        used_replica_hours=60,
        other_replicas=2,
    )

    # 14h left at T0: 140 replica-hours left is 10 replicas per hour, 2 taken by other apps
    assert usage.remaining_replica_hours() == 140
    assert usage.affordable_replicas(T0) == 8


def test_an_overspent_team_can_afford_no_replicas() -> None:
    usage = BudgetUsage(
        budget=TeamBudget(team="payments", period="day", limit=10), used_replica_hours=50
    )

    assert usage.affordable_replicas(T0) == 0
