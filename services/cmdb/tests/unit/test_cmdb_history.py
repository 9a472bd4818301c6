"""History: diffs between snapshots, state as of a past time, and reverting change sets."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from cmdb.domain import (
    FieldChange,
    InverseOperation,
    ItemRef,
    RevertConflictError,
    Revision,
    diff,
    plan_revert,
    state_as_of,
    states_as_of,
)

pytestmark = pytest.mark.unit

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
H1 = ItemRef(kind="host", id="h1")
H2 = ItemRef(kind="host", id="h2")
ZONE = ItemRef(kind="zone", id="zone-a")


def revision(
    sequence: int,
    change_set: str,
    item: ItemRef,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    minutes: int | None = None,
) -> Revision:
    operation = "create" if before is None else "delete" if after is None else "update"
    return Revision(
        sequence=sequence,
        change_set_id=change_set,
        item=item,
        operation=operation,
        before=before,
        after=after,
        actor="alice",
        cause=f"api:{change_set}",
        at=T0 + timedelta(minutes=sequence if minutes is None else minutes),
    )


def test_diff_lists_added_removed_and_changed_fields_with_nested_paths() -> None:
    before = {"status": "up", "labels": {"rack": "r1", "old": "x"}, "address": "10.0.0.1"}
    after = {"status": "down", "labels": {"rack": "r1", "new": "y"}, "address": "10.0.0.1"}

    assert diff(before, after) == [
        FieldChange(path=("labels", "new"), change="added", after="y"),
        FieldChange(path=("labels", "old"), change="removed", before="x"),
        FieldChange(path=("status",), change="changed", before="up", after="down"),
    ]


def test_diff_of_a_creation_lists_every_field_as_added() -> None:
    assert diff(None, {"id": "h1", "status": "up"}) == [
        FieldChange(path=("id",), change="added", after="h1"),
        FieldChange(path=("status",), change="added", after="up"),
    ]


def test_identical_snapshots_have_no_diff() -> None:
    assert diff({"a": {"b": [1, 2]}}, {"a": {"b": [1, 2]}}) == []


def test_a_revision_refuses_snapshots_that_do_not_fit_its_operation() -> None:
    with pytest.raises(ValidationError, match="a delete needs a before and no after"):
        Revision(
            sequence=1,
            change_set_id="cs1",
            item=H1,
            operation="delete",
            before=None,
            after={"id": "h1"},
            actor="alice",
            at=T0,
        )


HISTORY = [
    revision(1, "cs1", H1, None, {"id": "h1", "status": "up"}),
    revision(2, "cs2", H1, {"id": "h1", "status": "up"}, {"id": "h1", "status": "down"}),
    revision(3, "cs2", H2, None, {"id": "h2", "status": "up"}),
    revision(4, "cs3", H1, {"id": "h1", "status": "down"}, None),
]


def test_state_as_of_a_time_replays_the_revisions_made_until_then() -> None:
    assert state_as_of(HISTORY, H1, T0) is None
    assert state_as_of(HISTORY, H1, T0 + timedelta(minutes=1)) == {"id": "h1", "status": "up"}
    assert state_as_of(HISTORY, H1, T0 + timedelta(minutes=3, seconds=30)) == {
        "id": "h1",
        "status": "down",
    }
    assert state_as_of(HISTORY, H1, T0 + timedelta(hours=1)) is None


def test_states_as_of_a_time_list_every_item_that_existed_then() -> None:
    assert states_as_of(reversed(HISTORY), T0 + timedelta(minutes=3)) == {
        H1: {"id": "h1", "status": "down"},
        H2: {"id": "h2", "status": "up"},
    }


def test_reverting_a_change_set_computes_the_inverse_of_each_operation_newest_first() -> None:
    change_set = [
        revision(10, "cs9", ZONE, None, {"id": "zone-a"}),
        revision(11, "cs9", H1, {"id": "h1", "status": "up"}, {"id": "h1", "status": "down"}),
        revision(12, "cs9", H2, {"id": "h2", "status": "up"}, None),
    ]
    latest = {r.item: r for r in change_set}

    assert plan_revert(change_set, latest) == [
        InverseOperation(
            item=H2, operation="create", expected=None, target={"id": "h2", "status": "up"}
        ),
        InverseOperation(
            item=H1,
            operation="update",
            expected={"id": "h1", "status": "down"},
            target={"id": "h1", "status": "up"},
        ),
        InverseOperation(item=ZONE, operation="delete", expected={"id": "zone-a"}, target=None),
    ]


def test_an_item_touched_twice_in_a_change_set_is_reverted_to_its_state_before_it() -> None:
    change_set = [
        revision(1, "cs1", H1, {"id": "h1", "status": "up"}, {"id": "h1", "status": "down"}),
        revision(
            2, "cs1", H1, {"id": "h1", "status": "down"}, {"id": "h1", "status": "maintenance"}
        ),
    ]

    (operation,) = plan_revert(change_set, {H1: change_set[1]})

    assert operation.expected == {"id": "h1", "status": "maintenance"}
    assert operation.target == {"id": "h1", "status": "up"}


def test_an_item_created_and_deleted_in_the_same_change_set_needs_no_revert() -> None:
    change_set = [
        revision(1, "cs1", H1, None, {"id": "h1"}),
        revision(2, "cs1", H1, {"id": "h1"}, None),
    ]

    assert plan_revert(change_set, {H1: change_set[1]}) == []


def test_reverting_is_refused_when_an_item_changed_again_afterwards() -> None:
    change_set = [
        revision(5, "cs5", H1, {"id": "h1", "status": "up"}, {"id": "h1", "status": "down"})
    ]
    later = revision(
        8, "cs8", H1, {"id": "h1", "status": "down"}, {"id": "h1", "status": "retired"}
    )

    with pytest.raises(RevertConflictError) as caught:
        plan_revert(change_set, {H1: later})

    assert [(str(c.item), c.change_set_id, c.sequence) for c in caught.value.conflicts] == [
        ("host/h1", "cs8", 8)
    ]
    assert "cannot revert change set cs5: host/h1 changed again in change set cs8" in str(
        caught.value
    )


def test_a_forced_revert_moves_a_changed_item_from_its_current_state_back() -> None:
    change_set = [
        revision(5, "cs5", H1, {"id": "h1", "status": "up"}, {"id": "h1", "status": "down"})
    ]
    later = revision(
        8, "cs8", H1, {"id": "h1", "status": "down"}, {"id": "h1", "status": "retired"}
    )

    assert plan_revert(change_set, {H1: later}, force=True) == [
        InverseOperation(
            item=H1,
            operation="update",
            expected={"id": "h1", "status": "retired"},
            target={"id": "h1", "status": "up"},
        )
    ]


def test_a_forced_revert_recreates_an_item_deleted_after_the_change_set() -> None:
    change_set = [
        revision(5, "cs5", H1, {"id": "h1", "status": "up"}, {"id": "h1", "status": "down"})
    ]
    deleted = revision(8, "cs8", H1, {"id": "h1", "status": "down"}, None)

    (operation,) = plan_revert(change_set, {H1: deleted}, force=True)

    assert (operation.operation, operation.expected, operation.target) == (
        "create",
        None,
        {"id": "h1", "status": "up"},
    )


def test_reverting_needs_the_revisions_of_exactly_one_change_set() -> None:
    with pytest.raises(ValueError, match="one change set, got 2"):
        plan_revert(HISTORY[:2], {})
