"""The Change state machine: every legal move records its events, every illegal one is refused."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest

from pipeline.domain import (
    AbortRequested,
    Batch,
    BatchFailed,
    BatchStarted,
    BatchSucceeded,
    Canary,
    CanaryResume,
    Cause,
    CauseKind,
    Change,
    ChangeAborted,
    ChangeFailed,
    ChangeHeld,
    ChangeKind,
    ChangePaused,
    ChangePlanned,
    ChangeResumed,
    ChangeRolledBack,
    ChangeState,
    ChangeSucceeded,
    ChangeSuperseded,
    DomainError,
    IllegalTransition,
    InvalidChange,
    Placement,
    Plan,
    RollbackStarted,
    Target,
)

pytestmark = pytest.mark.unit

T0 = datetime(2024, 5, 6, 10, 0, tzinfo=UTC)
_ids = count(1)


def a_change(kind: ChangeKind = ChangeKind.DEPLOY, **target: object) -> Change:
    number = next(_ids)
    return Change(
        id=f"chg-{number}",
        application="shop",
        kind=kind,
        idempotency_key=f"key-{number}",
        actor="alice",
        cause=Cause(kind=CauseKind.REQUEST, id=f"req-{number}"),
        created_at=T0,
        target=Target.model_validate(target or {"version": "v2", "revision": 7}),
    )


def a_plan(batches: int = 3, canary: Canary | None = None, rollback: bool = False) -> Plan:
    return Plan(
        batches=tuple(Batch(number=n) for n in range(1, batches + 1)),
        batch_size=1,
        max_unavailable=0,
        canary=canary,
        rollback=rollback,
        version=None if rollback else "v2",
    )


def kinds(change: Change) -> list[type]:
    return [type(event) for event in change.pull_events()]


def planned(batches: int = 3, canary: Canary | None = None) -> Change:
    change = a_change()
    change.plan(a_plan(batches, canary), T0)
    return change


def running_with_batch_in_flight() -> Change:
    change = planned()
    change.start_batch(T0)
    return change


def running_between_batches() -> Change:
    change = running_with_batch_in_flight()
    change.batch_succeeded(T0)
    return change


def paused() -> Change:
    change = running_between_batches()
    change.pause(T0)
    return change


def succeeded() -> Change:
    change = planned(batches=1)
    change.start_batch(T0)
    change.batch_succeeded(T0)
    return change


def failed() -> Change:
    change = a_change()
    change.planning_failed("not enough capacity", T0)
    return change


def rolling_back_without_plan() -> Change:
    change = running_with_batch_in_flight()
    change.batch_failed("health check timed out", T0)
    return change


def rolling_back_between_batches() -> Change:
    change = rolling_back_without_plan()
    change.plan(a_plan(2, rollback=True), T0)
    return change


def rolled_back() -> Change:
    change = rolling_back_without_plan()
    change.plan(a_plan(0, rollback=True), T0)
    return change


def aborted() -> Change:
    change = a_change()
    change.abort("no longer needed", T0)
    return change


STATES: dict[str, Callable[[], Change]] = {
    "pending": a_change,
    "planned": planned,
    "running with a batch in flight": running_with_batch_in_flight,
    "running between batches": running_between_batches,
    "paused": paused,
    "succeeded": succeeded,
    "failed": failed,
    "rolling back without a plan": rolling_back_without_plan,
    "rolling back between batches": rolling_back_between_batches,
    "rolled back": rolled_back,
    "aborted": aborted,
}

ACTIONS: dict[str, Callable[[Change], object]] = {
    "hold": lambda c: c.hold("frozen", T0),
    "supersede": lambda c: c.supersede("chg-newer", T0),
    "plan": lambda c: c.plan(a_plan(rollback=c.state is ChangeState.ROLLING_BACK), T0),
    "planning_failed": lambda c: c.planning_failed("no room", T0),
    "start_batch": lambda c: c.start_batch(T0),
    "batch_succeeded": lambda c: c.batch_succeeded(T0),
    "batch_failed": lambda c: c.batch_failed("crashed", T0),
    "pause": lambda c: c.pause(T0),
    "resume": lambda c: c.resume(T0),
    "abort": lambda c: c.abort("stop", T0),
    "rollback_requested": lambda c: c.rollback_requested("bad metrics", T0),
}

LEGAL = {
    "pending": {"hold", "supersede", "plan", "planning_failed", "abort"},
    "planned": {"start_batch", "pause", "abort"},
    "running with a batch in flight": {"batch_succeeded", "batch_failed", "pause", "abort"},
    "running between batches": {"start_batch", "pause", "abort"},
    "paused": {"resume", "abort"},
    "succeeded": {"rollback_requested"},
    "failed": set(),
    "rolling back without a plan": {"plan", "planning_failed"},
    "rolling back between batches": {"start_batch"},
    "rolled back": set(),
    "aborted": set(),
}

ILLEGAL = [(state, action) for state in STATES for action in ACTIONS if action not in LEGAL[state]]


@pytest.mark.parametrize(("state", "action"), ILLEGAL)
def test_an_illegal_transition_is_refused_and_changes_nothing(state: str, action: str) -> None:
    change = STATES[state]()
    change.pull_events()
    before = change.model_dump()

    with pytest.raises(IllegalTransition) as refused:
        ACTIONS[action](change)

    assert change.id in str(refused.value)
    assert str(change.state) in str(refused.value)
    assert change.model_dump() == before
    assert change.pull_events() == []


@pytest.mark.parametrize(
    ("state", "action"), [(state, action) for state in STATES for action in LEGAL[state]]
)
def test_every_legal_transition_records_at_least_one_event(state: str, action: str) -> None:
    change = STATES[state]()
    change.pull_events()

    ACTIONS[action](change)

    assert change.pull_events()


def test_a_new_change_is_pending() -> None:
    change = a_change()

    assert change.state is ChangeState.PENDING
    assert not change.is_active
    assert change.pull_events() == []


@pytest.mark.parametrize(
    ("kind", "missing"),
    [
        (ChangeKind.DEPLOY, "version"),
        (ChangeKind.ROLLBACK, "version"),
        (ChangeKind.SCALE, "replicas"),
        (ChangeKind.MIGRATE, "placement"),
    ],
)
def test_a_change_without_the_target_its_kind_needs_is_invalid(
    kind: ChangeKind, missing: str
) -> None:
    with pytest.raises(InvalidChange, match=missing):
        a_change(kind, revision=1)


def test_a_restart_needs_no_target() -> None:
    assert a_change(ChangeKind.RESTART, revision=None).kind is ChangeKind.RESTART


def test_a_migration_names_where_instances_go() -> None:
    change = a_change(ChangeKind.MIGRATE, placement=Placement(zones=frozenset({"b"})))

    assert change.target.placement.zones == {"b"}


def test_planning_a_change_makes_it_planned_and_active() -> None:
    change = planned(batches=3)

    assert change.state is ChangeState.PLANNED
    assert change.is_active
    assert change.rollout_plan is not None
    [event] = change.pull_events()
    assert isinstance(event, ChangePlanned)
    assert (event.batches, event.rollback) == (3, False)


def test_a_plan_with_no_batches_succeeds_at_once() -> None:
    change = planned(batches=0)

    assert change.state is ChangeState.SUCCEEDED
    assert kinds(change) == [ChangePlanned, ChangeSucceeded]


def test_a_pending_change_refuses_a_rollback_plan() -> None:
    with pytest.raises(DomainError, match="expects a rollout plan"):
        a_change().plan(a_plan(rollback=True), T0)


def test_a_rollback_refuses_a_rollout_plan() -> None:
    with pytest.raises(DomainError, match="expects a rollback plan"):
        rolling_back_without_plan().plan(a_plan(), T0)


def test_a_plan_that_does_not_fit_fails_the_change_at_once() -> None:
    change = failed()

    assert change.state is ChangeState.FAILED
    assert change.reason == "not enough capacity"
    assert change.is_finished
    [event] = change.pull_events()
    assert isinstance(event, ChangeFailed)
    assert event.reason == "not enough capacity"


def test_starting_a_batch_runs_batch_k_of_n() -> None:
    change = planned(batches=3)
    change.pull_events()

    assert change.start_batch(T0) == 1

    assert change.state is ChangeState.RUNNING
    assert change.position == "running batch 1 of 3"
    [event] = change.pull_events()
    assert isinstance(event, BatchStarted)
    assert (event.batch, event.of, event.rollback) == (1, 3, False)


def test_a_second_batch_cannot_start_while_one_runs() -> None:
    with pytest.raises(IllegalTransition, match="batch 1 is running"):
        running_with_batch_in_flight().start_batch(T0)


def test_batches_run_one_after_another_until_the_change_succeeds() -> None:
    change = planned(batches=3)
    for _ in range(3):
        change.start_batch(T0)
        change.batch_succeeded(T0)

    assert change.state is ChangeState.SUCCEEDED
    assert change.reason is None
    assert kinds(change) == [ChangePlanned] + [BatchStarted, BatchSucceeded] * 3 + [ChangeSucceeded]


def test_a_canary_with_a_manual_pause_waits_to_be_resumed() -> None:
    change = planned(batches=3, canary=Canary(resume=CanaryResume.MANUAL))
    change.start_batch(T0)
    change.pull_events()

    change.batch_succeeded(T0)

    assert change.state is ChangeState.PAUSED
    assert change.resume_at is None
    assert not change.due_to_resume(T0 + timedelta(days=365))
    succeeded_event, paused_event = change.pull_events()
    assert isinstance(succeeded_event, BatchSucceeded)
    assert isinstance(paused_event, ChangePaused)
    assert paused_event.reason == "canary batch succeeded"


def test_a_canary_with_an_automatic_pause_is_due_to_resume_after_its_delay() -> None:
    canary = Canary(resume=CanaryResume.AUTO, delay=timedelta(minutes=5))
    change = planned(batches=3, canary=canary)
    change.start_batch(T0)

    change.batch_succeeded(T0)

    assert change.resume_at == T0 + timedelta(minutes=5)
    assert not change.due_to_resume(T0 + timedelta(minutes=4))
    assert change.due_to_resume(T0 + timedelta(minutes=5))


def test_a_canary_that_is_the_only_batch_does_not_pause() -> None:
    change = planned(batches=1, canary=Canary())
    change.start_batch(T0)

    change.batch_succeeded(T0)

    assert change.state is ChangeState.SUCCEEDED


def test_resuming_after_the_canary_runs_the_remaining_batches() -> None:
    change = planned(batches=2, canary=Canary())
    change.start_batch(T0)
    change.batch_succeeded(T0)
    change.pull_events()

    change.resume(T0)

    assert change.state is ChangeState.RUNNING
    assert change.resume_at is None
    assert kinds(change) == [ChangeResumed]
    assert change.start_batch(T0) == 2


def test_pausing_a_running_batch_lets_it_finish_but_starts_no_other() -> None:
    change = running_with_batch_in_flight()
    change.pause(T0)

    change.batch_succeeded(T0)

    assert change.state is ChangeState.PAUSED
    with pytest.raises(IllegalTransition, match="paused"):
        change.start_batch(T0)


def test_a_change_paused_before_its_first_batch_resumes_as_planned() -> None:
    change = planned()
    change.pause(T0, reason="waiting for the on-call")

    change.resume(T0)

    assert change.state is ChangeState.PLANNED


def test_a_failed_batch_starts_an_automatic_rollback() -> None:
    change = running_with_batch_in_flight()
    change.pull_events()

    change.batch_failed("health check timed out", T0)

    assert change.state is ChangeState.ROLLING_BACK
    assert change.reason == "batch 1 of 3 failed: health check timed out"
    failed_event, rollback_event = change.pull_events()
    assert isinstance(failed_event, BatchFailed)
    assert (failed_event.batch, failed_event.reason) == (1, "health check timed out")
    assert isinstance(rollback_event, RollbackStarted)
    assert rollback_event.reason == change.reason


def test_a_batch_that_fails_while_paused_still_rolls_back() -> None:
    change = running_with_batch_in_flight()
    change.pause(T0)

    change.batch_failed("crashed", T0)

    assert change.state is ChangeState.ROLLING_BACK


def test_a_rollback_runs_its_batches_and_pins_the_declared_state() -> None:
    change = rolling_back_between_batches()
    change.pull_events()
    for _ in range(2):
        assert change.position.startswith("rolling back")
        change.start_batch(T0)
        change.batch_succeeded(T0)

    assert change.state is ChangeState.ROLLED_BACK
    recorded = change.pull_events()
    assert [type(e) for e in recorded] == [BatchStarted, BatchSucceeded] * 2 + [ChangeRolledBack]
    assert all(e.rollback for e in recorded if isinstance(e, BatchStarted))
    rolled_back_event = recorded[-1]
    assert isinstance(rolled_back_event, ChangeRolledBack)
    pin = rolled_back_event.pin
    assert pin is not None
    assert (pin.application, pin.revision, pin.version) == ("shop", 7, "v2")
    assert pin.change_id == change.id
    assert "health check timed out" in pin.reason


def test_an_empty_rollback_plan_finishes_the_rollback_at_once() -> None:
    change = rolled_back()

    assert change.state is ChangeState.ROLLED_BACK
    assert kinds(change)[-2:] == [ChangePlanned, ChangeRolledBack]


def test_rolling_back_an_automatic_scale_pins_nothing() -> None:
    change = a_change(ChangeKind.SCALE, replicas=5)
    change.plan(a_plan(1), T0)
    change.start_batch(T0)
    change.batch_failed("crashed", T0)

    change.plan(a_plan(0, rollback=True), T0)

    rolled_back_event = change.pull_events()[-1]
    assert isinstance(rolled_back_event, ChangeRolledBack)
    assert rolled_back_event.pin is None


def test_a_failed_rollback_batch_fails_the_change() -> None:
    change = rolling_back_between_batches()
    change.start_batch(T0)
    change.pull_events()

    change.batch_failed("host unreachable", T0)

    assert change.state is ChangeState.FAILED
    assert change.reason == "rollback batch 1 of 2 failed: host unreachable"
    assert kinds(change) == [BatchFailed, ChangeFailed]


def test_a_rollback_that_cannot_be_planned_fails_the_change() -> None:
    change = rolling_back_without_plan()

    change.planning_failed("no room to restore v1", T0)

    assert change.state is ChangeState.FAILED


def test_a_finished_change_rolls_back_on_request() -> None:
    change = succeeded()
    change.pull_events()

    change.rollback_requested("error rate doubled", T0)

    assert change.state is ChangeState.ROLLING_BACK
    assert change.is_active
    [event] = change.pull_events()
    assert isinstance(event, RollbackStarted)
    assert event.reason == "error rate doubled"


def test_an_aborted_change_that_applied_batches_rolls_back_on_request() -> None:
    change = running_between_batches()
    change.abort("wrong version", T0)

    change.rollback_requested("undo the first batch", T0)

    assert change.state is ChangeState.ROLLING_BACK


def test_a_change_aborted_before_any_batch_has_nothing_to_roll_back() -> None:
    change = planned()
    change.abort("wrong version", T0)

    with pytest.raises(IllegalTransition, match="applied nothing"):
        change.rollback_requested("undo", T0)


@pytest.mark.parametrize("state", ["pending", "planned", "running between batches", "paused"])
def test_aborting_without_a_batch_in_flight_stops_the_change_at_once(state: str) -> None:
    change = STATES[state]()
    change.pull_events()

    change.abort("release cancelled", T0)

    assert change.state is ChangeState.ABORTED
    assert change.reason == "release cancelled"
    assert kinds(change) == [ChangeAborted]


def test_aborting_during_a_batch_waits_for_it_to_finish() -> None:
    change = running_with_batch_in_flight()
    change.pull_events()

    change.abort("release cancelled", T0)

    assert change.state is ChangeState.RUNNING
    assert kinds(change) == [AbortRequested]
    change.batch_succeeded(T0)
    assert change.state is ChangeState.ABORTED
    assert kinds(change) == [BatchSucceeded, ChangeAborted]


def test_an_abort_requested_twice_is_refused() -> None:
    change = running_with_batch_in_flight()
    change.abort("once", T0)

    with pytest.raises(IllegalTransition, match="already requested"):
        change.abort("twice", T0)


def test_a_batch_that_fails_after_an_abort_request_rolls_back_instead() -> None:
    change = running_with_batch_in_flight()
    change.abort("release cancelled", T0)

    change.batch_failed("crashed", T0)

    assert change.state is ChangeState.ROLLING_BACK
    assert change.abort_reason is None


def test_the_last_batch_succeeding_after_an_abort_request_completes_the_change() -> None:
    change = planned(batches=1)
    change.start_batch(T0)
    change.abort("too late", T0)

    change.batch_succeeded(T0)

    assert change.state is ChangeState.SUCCEEDED


def test_a_held_change_records_each_new_reason_once() -> None:
    change = a_change()

    change.hold("releases are frozen", T0)
    change.hold("releases are frozen", T0 + timedelta(minutes=1))
    change.hold("outside the change windows", T0 + timedelta(minutes=2))

    assert change.state is ChangeState.PENDING
    assert change.reason == "outside the change windows"
    assert kinds(change) == [ChangeHeld, ChangeHeld]


def test_a_superseded_change_is_aborted_naming_its_successor() -> None:
    change = a_change()

    change.supersede("chg-newer", T0)

    assert change.state is ChangeState.ABORTED
    assert change.reason == "superseded by change chg-newer"
    [event] = change.pull_events()
    assert isinstance(event, ChangeSuperseded)
    assert event.by == "chg-newer"


def test_pulling_events_hands_them_over_once() -> None:
    change = planned()

    assert len(change.pull_events()) == 1
    assert change.pull_events() == []


def test_a_change_survives_a_round_trip_through_json() -> None:
    change = rolling_back_between_batches()
    change.start_batch(T0)
    change.pull_events()

    restored = Change.model_validate_json(change.model_dump_json())

    assert restored == change
    restored.batch_succeeded(T0)
    assert restored.rollback_progress.done == 1
