"""The pure helpers of elastic's use cases: request ids, host capacity, summaries, pending state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from elastic.cmdb import Host
from elastic.domain import Clip, Outcome, Rule
from elastic.handlers import change_request_id, clipping_summary, host_capacities
from elastic.store import LearnedState

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_a_change_request_id_names_the_app_and_the_decision() -> None:
    assert change_request_id("web", "dec-7") == "elastic/web/dec-7"


def test_a_change_request_id_that_would_be_too_long_is_hashed_but_stable() -> None:
    long = "d" * 300
    request_id = change_request_id("web", long)
    assert len(request_id) <= 200
    assert request_id.startswith("elastic/web/")
    assert request_id == change_request_id("web", long)


def test_host_capacity_is_what_the_cmdb_has_not_allocated_and_down_hosts_take_nothing() -> None:
    up, down = (
        Host.model_validate(
            {
                "id": name,
                "zone_id": "z1",
                "pool_id": "p1",
                "cpu_millis": 4000,
                "memory_mib": 4096,
                "status": status,
                "allocated": {"cpu_millis": 1500, "memory_mib": 5000},
            }
        )
        for name, status in (("h1", "up"), ("h2", "down"))
    )
    first, second = host_capacities([up, down])
    assert (first.free_cpu_millis, first.free_memory_mib, first.schedulable) == (2500, 0, True)
    assert second.schedulable is False


def outcome(clips: tuple[Clip, ...]) -> Outcome:
    return Outcome(
        app_id="web",
        action="scale_up",
        current_replicas=2,
        requested_replicas=9,
        final_replicas=clips[-1].to_replicas if clips else 9,
        placement={},
        clipped_by=clips,
    )


def test_the_summary_of_an_unclipped_outcome_quotes_the_decision() -> None:
    assert clipping_summary(outcome(()), "forecast needs 9") == (
        "decision asked 9, requesting 9 (within policy): forecast needs 9"
    )


def test_the_summary_of_a_clipped_outcome_lists_every_rule_in_order() -> None:
    clips = (
        Clip(rule=Rule.BOUNDS, from_replicas=9, to_replicas=6, reason="policy allows 1..6"),
        Clip(rule=Rule.STEP, from_replicas=6, to_replicas=4, reason="step limited to 2"),
    )
    assert clipping_summary(outcome(clips), "x") == (
        "decision asked 9, requesting 4; clipped by bounds 9->6: policy allows 1..6; "
        "step 6->4: step limited to 2"
    )


def state(pending_at: datetime | None) -> LearnedState:
    pending = None
    if pending_at is not None:
        pending = {"request_id": "r", "placement": {"a": 3, "b": 3}, "at": pending_at.isoformat()}
    return LearnedState(
        app="web", sequence=4, replicas_by_zone={"a": 1, "b": 1}, instances=[], pending=pending
    )


def test_a_requested_change_counts_as_the_current_size_until_it_is_done() -> None:
    assert state(NOW - timedelta(minutes=5)).expected_by_zone(NOW, timedelta(hours=1)) == {
        "a": 3,
        "b": 3,
    }


def test_a_request_never_reported_done_is_forgotten_after_the_horizon() -> None:
    assert state(NOW - timedelta(hours=2)).expected_by_zone(NOW, timedelta(hours=1)) == {
        "a": 1,
        "b": 1,
    }
    assert state(None).expected_by_zone(NOW, timedelta(hours=1)) == {"a": 1, "b": 1}
