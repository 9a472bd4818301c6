"""Admission: one active change per application, queue order, supersede, freeze, windows, pins."""

from datetime import UTC, datetime, time, timedelta, timezone
from itertools import count

import pytest

from pipeline.domain import (
    Batch,
    Cause,
    CauseKind,
    Change,
    ChangeKind,
    ChangeState,
    ChangeWindow,
    DomainError,
    Freeze,
    InvalidWindow,
    Pin,
    Plan,
    Target,
    blocked_by_pin,
    next_to_start,
    supersede_scale_requests,
)

pytestmark = pytest.mark.unit

MONDAY_10 = datetime(2024, 5, 6, 10, 0, tzinfo=UTC)
SATURDAY_10 = datetime(2024, 5, 11, 10, 0, tzinfo=UTC)
OFFICE_HOURS = [ChangeWindow.parse("Mon-Fri 09:00-17:00 UTC")]
_ids = count(1)


def a_change(
    kind: ChangeKind = ChangeKind.DEPLOY,
    minutes: int = 0,
    emergency: bool = False,
    automated: bool = False,
    application: str = "shop",
    **target: object,
) -> Change:
    number = next(_ids)
    cause = Cause(kind=CauseKind.EVENT if automated else CauseKind.REQUEST, id=f"cause-{number}")
    if not target:
        target = {"replicas": 3} if kind is ChangeKind.SCALE else {"version": "v2"}
    return Change(
        id=f"chg-{number}",
        application=application,
        kind=kind,
        idempotency_key=f"key-{number}",
        actor="elastic" if automated else "alice",
        cause=cause,
        emergency=emergency,
        created_at=MONDAY_10 - timedelta(hours=1) + timedelta(minutes=minutes),
        target=Target.model_validate(target),
    )


def running(change: Change, batches: int = 5) -> Change:
    plan = Plan(
        batches=tuple(Batch(number=n) for n in range(1, batches + 1)),
        batch_size=1,
        max_unavailable=0,
    )
    change.plan(plan, MONDAY_10)
    for _ in range(2):
        change.start_batch(MONDAY_10)
        change.batch_succeeded(MONDAY_10)
    change.start_batch(MONDAY_10)
    return change


def a_freeze(**overrides: object) -> Freeze:
    fields: dict[str, object] = {
        "reason": "end-of-quarter",
        "actor": "bob",
        "since": MONDAY_10 - timedelta(days=1),
    }
    return Freeze.model_validate(fields | overrides)


def test_the_oldest_queued_change_starts_first() -> None:
    older, newer = a_change(minutes=1), a_change(minutes=2)

    decision = next_to_start([newer, older], None, [], MONDAY_10)

    assert decision.start is older
    assert decision.held is None


def test_changes_created_at_the_same_time_keep_their_queue_order() -> None:
    first, second = a_change(), a_change()

    assert next_to_start([first, second], None, [], MONDAY_10).start is first


def test_nothing_starts_when_no_change_waits() -> None:
    done = a_change()
    done.abort("cancelled", MONDAY_10)

    decision = next_to_start([done], None, [], MONDAY_10)

    assert (decision.start, decision.held) == (None, None)
    assert decision.reason == "no change is waiting"


def test_one_active_change_holds_the_rest_of_the_queue() -> None:
    active = running(a_change(minutes=1))
    queued = a_change(minutes=2)

    decision = next_to_start([active, queued], None, [], MONDAY_10)

    assert decision.start is None
    assert decision.held is queued
    assert decision.reason == f"waits for change {active.id} (running batch 3 of 5)"


@pytest.mark.parametrize("state", ["planned", "paused", "rolling_back"])
def test_a_planned_paused_or_rolling_back_change_also_holds_the_queue(state: str) -> None:
    active = running(a_change(minutes=1))
    active.batch_succeeded(MONDAY_10)
    if state == "paused":
        active.pause(MONDAY_10)
    elif state == "rolling_back":
        active.start_batch(MONDAY_10)
        active.batch_failed("crashed", MONDAY_10)
    else:
        active = a_change(minutes=1)
        active.plan(Plan(batches=(Batch(number=1),), batch_size=1, max_unavailable=0), MONDAY_10)
    assert active.state == state

    decision = next_to_start([active, a_change(minutes=2)], None, [], MONDAY_10)

    assert decision.start is None
    assert active.id in decision.reason


def test_finished_changes_do_not_hold_the_queue() -> None:
    finished = a_change(minutes=1)
    finished.supersede("chg-other", MONDAY_10)
    queued = a_change(minutes=2)

    assert next_to_start([finished, queued], None, [], MONDAY_10).start is queued


def test_a_freeze_holds_changes_back_with_its_reason() -> None:
    queued = a_change()

    decision = next_to_start([queued], a_freeze(), [], MONDAY_10)

    assert decision.start is None
    assert decision.held is queued
    assert decision.reason == "releases are frozen by bob: end-of-quarter"


def test_a_freeze_that_has_ended_holds_nothing() -> None:
    freeze = a_freeze(until=MONDAY_10 - timedelta(minutes=1))

    assert next_to_start([a_change()], freeze, [], MONDAY_10).start is not None


def test_a_freeze_that_has_not_begun_holds_nothing() -> None:
    freeze = a_freeze(since=MONDAY_10 + timedelta(hours=1))

    assert next_to_start([a_change()], freeze, [], MONDAY_10).start is not None


def test_a_freeze_with_an_end_says_until_when() -> None:
    freeze = a_freeze(until=MONDAY_10 + timedelta(days=1))

    decision = next_to_start([a_change()], freeze, [], MONDAY_10)

    assert "until 2024-05-07 10:00 UTC" in decision.reason


def test_a_change_inside_its_window_starts() -> None:
    assert next_to_start([a_change()], None, OFFICE_HOURS, MONDAY_10).start is not None


def test_a_change_outside_its_windows_is_held_until_the_next_opening() -> None:
    queued = a_change()

    decision = next_to_start([queued], None, OFFICE_HOURS, SATURDAY_10)

    assert decision.held is queued
    assert decision.reason == (
        "outside the change windows of shop (Mon,Tue,Wed,Thu,Fri 09:00-17:00 UTC);"
        " the next opens at Mon 2024-05-13 09:00 UTC"
    )


def test_without_windows_a_change_may_start_at_any_time() -> None:
    assert next_to_start([a_change()], None, [], SATURDAY_10).start is not None


def test_an_emergency_change_bypasses_a_freeze() -> None:
    urgent = a_change(emergency=True)

    decision = next_to_start([urgent], a_freeze(), [], MONDAY_10)

    assert decision.start is urgent
    assert "emergency" in decision.reason


def test_an_emergency_change_bypasses_the_change_windows() -> None:
    urgent = a_change(emergency=True)

    assert next_to_start([urgent], None, OFFICE_HOURS, SATURDAY_10).start is urgent


def test_an_emergency_change_goes_ahead_of_older_queued_changes() -> None:
    older, urgent = a_change(minutes=1), a_change(minutes=2, emergency=True)

    assert next_to_start([older, urgent], a_freeze(), [], MONDAY_10).start is urgent


def test_an_emergency_change_still_waits_for_the_active_change() -> None:
    active, urgent = running(a_change(minutes=1)), a_change(minutes=2, emergency=True)

    decision = next_to_start([active, urgent], None, [], MONDAY_10)

    assert decision.start is None
    assert decision.held is urgent


def test_a_queue_mixing_applications_is_refused() -> None:
    with pytest.raises(DomainError, match="one application"):
        next_to_start([a_change(), a_change(application="cart")], None, [], MONDAY_10)


def test_times_without_a_timezone_are_refused() -> None:
    with pytest.raises(DomainError, match="timezone"):
        OFFICE_HOURS[0].contains(datetime(2024, 5, 6, 10, 0))


def test_a_newer_scale_request_supersedes_a_queued_one() -> None:
    older = a_change(ChangeKind.SCALE, minutes=1, replicas=4, automated=True)
    newer = a_change(ChangeKind.SCALE, minutes=2, replicas=6, automated=True)

    dropped = supersede_scale_requests([older, newer], MONDAY_10)

    assert dropped == [older]
    assert older.state is ChangeState.ABORTED
    assert older.reason == f"superseded by change {newer.id}"
    assert newer.state is ChangeState.PENDING


def test_a_scale_request_delivered_late_is_superseded_by_the_newer_queued_one() -> None:
    newer = a_change(ChangeKind.SCALE, minutes=5, replicas=6)
    late = a_change(ChangeKind.SCALE, minutes=1, replicas=4)

    assert supersede_scale_requests([newer, late], MONDAY_10) == [late]


def test_a_scale_request_that_already_started_is_not_superseded() -> None:
    started = running(a_change(ChangeKind.SCALE, minutes=1, replicas=4))
    newer = a_change(ChangeKind.SCALE, minutes=2, replicas=6)

    assert supersede_scale_requests([started, newer], MONDAY_10) == []
    assert started.state is ChangeState.RUNNING


def test_a_scale_request_does_not_supersede_other_kinds_of_change() -> None:
    deploy = a_change(ChangeKind.DEPLOY, minutes=1)
    scale = a_change(ChangeKind.SCALE, minutes=2)

    assert supersede_scale_requests([deploy, scale], MONDAY_10) == []
    assert deploy.state is ChangeState.PENDING


def test_an_ordinary_scale_request_does_not_supersede_an_emergency_one() -> None:
    urgent = a_change(ChangeKind.SCALE, minutes=1, emergency=True)
    ordinary = a_change(ChangeKind.SCALE, minutes=2)

    assert supersede_scale_requests([urgent, ordinary], MONDAY_10) == []


def test_an_emergency_scale_request_supersedes_any_older_queued_one() -> None:
    older_urgent = a_change(ChangeKind.SCALE, minutes=1, emergency=True)
    ordinary = a_change(ChangeKind.SCALE, minutes=2)
    urgent = a_change(ChangeKind.SCALE, minutes=3, emergency=True)

    dropped = supersede_scale_requests([older_urgent, ordinary, urgent], MONDAY_10)

    assert dropped == [older_urgent, ordinary]


def test_an_empty_queue_supersedes_nothing() -> None:
    assert supersede_scale_requests([], MONDAY_10) == []


@pytest.mark.parametrize(
    ("text", "days", "start", "end"),
    [
        ("Mon-Fri 09:00-17:00 UTC", {0, 1, 2, 3, 4}, time(9), time(17)),
        ("sat,sun 22:00-02:00", {5, 6}, time(22), time(2)),
        ("Fri-Mon 8:30 - 9:45", {4, 5, 6, 0}, time(8, 30), time(9, 45)),
        ("Wed 00:00-00:00", {2}, time(0), time(0)),
    ],
)
def test_a_change_window_reads_days_and_hours(
    text: str, days: set[int], start: time, end: time
) -> None:
    window = ChangeWindow.parse(text)

    assert (window.days, window.start, window.end) == (days, start, end)
    assert ChangeWindow.parse(window.describe()) == window


@pytest.mark.parametrize("text", ["weekdays 9-5", "Mon-Fry 09:00-17:00", "Mon 25:00-26:00", ""])
def test_an_unreadable_change_window_is_refused_with_an_example(text: str) -> None:
    with pytest.raises(InvalidWindow):
        ChangeWindow.parse(text)


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        (datetime(2024, 5, 10, 23, 0, tzinfo=UTC), False),
        (datetime(2024, 5, 11, 23, 0, tzinfo=UTC), True),
        (datetime(2024, 5, 12, 1, 59, tzinfo=UTC), True),
        (datetime(2024, 5, 13, 1, 0, tzinfo=UTC), True),
        (datetime(2024, 5, 13, 2, 0, tzinfo=UTC), False),
        (datetime(2024, 5, 11, 21, 59, tzinfo=UTC), False),
    ],
)
def test_a_window_that_crosses_midnight_ends_the_next_day(moment: datetime, inside: bool) -> None:
    assert ChangeWindow.parse("Sat,Sun 22:00-02:00").contains(moment) is inside


def test_a_window_is_judged_in_utc_whatever_the_caller_timezone() -> None:
    tokyo = datetime(2024, 5, 7, 2, 30, tzinfo=timezone(timedelta(hours=9)))

    assert not OFFICE_HOURS[0].contains(tokyo)
    assert OFFICE_HOURS[0].contains(tokyo - timedelta(hours=1))


def test_a_window_that_opens_later_today_opens_today() -> None:
    early = datetime(2024, 5, 6, 7, 0, tzinfo=UTC)

    assert OFFICE_HOURS[0].next_opening(early) == datetime(2024, 5, 6, 9, 0, tzinfo=UTC)


def a_pin(revision: int | None = 7, version: str | None = "v2") -> Pin:
    return Pin(
        application="shop",
        revision=revision,
        version=version,
        reason="batch 1 of 3 failed: crashed",
        change_id="chg-bad",
        pinned_at=MONDAY_10,
    )


def test_a_pin_blocks_the_loop_from_reapplying_the_rolled_back_revision() -> None:
    again = a_change(automated=True, version="v2", revision=7)

    reason = blocked_by_pin(a_pin(), again)

    assert reason is not None
    assert "revision 7 stays pinned until the declared spec changes" in reason
    assert "chg-bad" in reason


def test_a_pin_blocks_an_automated_scale_that_reapplies_the_pinned_revision() -> None:
    drift = a_change(ChangeKind.SCALE, automated=True, replicas=6, revision=7)

    assert blocked_by_pin(a_pin(), drift) is not None


def test_a_pin_blocks_an_automated_deploy_of_the_rolled_back_version() -> None:
    again = a_change(automated=True, version="v2")

    reason = blocked_by_pin(a_pin(), again)

    assert reason is not None
    assert "version v2 stays pinned" in reason


def test_a_changed_declared_spec_is_not_blocked_by_the_pin() -> None:
    fixed = a_change(automated=True, version="v2", revision=8)
    pin = a_pin()

    assert blocked_by_pin(pin, fixed) is None
    assert pin.lifted_by(8)
    assert not pin.lifted_by(7)
    assert not pin.lifted_by(None)


def test_a_pin_without_a_revision_is_lifted_by_any_declared_revision() -> None:
    assert a_pin(revision=None).lifted_by(1)


def test_a_person_may_release_the_pinned_version_on_purpose() -> None:
    manual = a_change(automated=False, version="v2", revision=7)

    assert blocked_by_pin(a_pin(), manual) is None


def test_an_automated_scale_of_the_current_version_is_not_blocked() -> None:
    autoscale = a_change(ChangeKind.SCALE, automated=True, replicas=9)

    assert blocked_by_pin(a_pin(), autoscale) is None


def test_a_pin_of_another_application_blocks_nothing() -> None:
    other = a_change(automated=True, application="cart", version="v2", revision=7)

    assert blocked_by_pin(a_pin(), other) is None


def test_no_pin_blocks_nothing() -> None:
    assert blocked_by_pin(None, a_change(automated=True)) is None
