"""Item history: revisions, before/after diffs, state as of a past time, reverting change sets."""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, PositiveInt, model_validator

from cmdb.domain.items import ItemRef

Snapshot = dict[str, Any]
Operation = Literal["create", "update", "delete"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def operation_between(before: Snapshot | None, after: Snapshot | None) -> Operation | None:
    """The operation that turns `before` into `after` (None when nothing exists on either side)."""
    if before is None:
        return None if after is None else "create"
    return "delete" if after is None else "update"


class Revision(_Frozen):
    """One change to one item: before and after snapshots, who made it, why, and when."""

    sequence: PositiveInt
    change_set_id: str
    item: ItemRef
    operation: Operation
    before: Snapshot | None
    after: Snapshot | None
    actor: str
    cause: str | None = None
    at: AwareDatetime

    @model_validator(mode="after")
    def _snapshots_fit_operation(self) -> Self:
        if operation_between(self.before, self.after) != self.operation:
            raise ValueError(
                f"a {self.operation} needs "
                + {
                    "create": "no before and an after",
                    "update": "both before and after",
                    "delete": "a before and no after",
                }[self.operation]
            )
        return self


class FieldChange(_Frozen):
    """One field that differs between two snapshots."""

    path: tuple[str, ...]
    change: Literal["added", "removed", "changed"]
    before: Any = None
    after: Any = None


def diff(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> list[FieldChange]:
    """The fields that differ between two snapshots, descending into nested objects."""
    return _diff(before or {}, after or {}, ())


def _diff(
    before: Mapping[str, Any], after: Mapping[str, Any], prefix: tuple[str, ...]
) -> list[FieldChange]:
    changes: list[FieldChange] = []
    for key in sorted(before.keys() | after.keys()):
        path = (*prefix, key)
        if key not in after:
            changes.append(FieldChange(path=path, change="removed", before=before[key]))
        elif key not in before:
            changes.append(FieldChange(path=path, change="added", after=after[key]))
        elif isinstance(before[key], Mapping) and isinstance(after[key], Mapping):
            changes.extend(_diff(before[key], after[key], path))
        elif before[key] != after[key]:
            changes.append(
                FieldChange(path=path, change="changed", before=before[key], after=after[key])
            )
    return changes


def states_as_of(revisions: Iterable[Revision], at: AwareDatetime) -> dict[ItemRef, Snapshot]:
    """Every item that existed at time `at`, by replaying the revisions made up to then in order."""
    state: dict[ItemRef, Snapshot] = {}
    for revision in sorted(revisions, key=lambda r: r.sequence):
        if revision.at > at:
            continue
        if revision.after is None:
            state.pop(revision.item, None)
        else:
            state[revision.item] = revision.after
    return state


def state_as_of(revisions: Iterable[Revision], item: ItemRef, at: AwareDatetime) -> Snapshot | None:
    """One item's snapshot at time `at`, or None if it did not exist then."""
    return states_as_of((r for r in revisions if r.item == item), at).get(item)


class InverseOperation(_Frozen):
    """One step of a revert: move an item from its `expected` current state to `target`."""

    item: ItemRef
    operation: Operation
    expected: Snapshot | None
    target: Snapshot | None


class Conflict(_Frozen):
    """An item that changed again after the change set being reverted."""

    item: ItemRef
    change_set_id: str
    sequence: int

    def __str__(self) -> str:
        return (
            f"{self.item} changed again in change set {self.change_set_id} "
            f"(revision {self.sequence})"
        )


class RevertConflictError(Exception):
    """Reverting would overwrite later changes; retry with force to overwrite them anyway."""

    def __init__(self, change_set_id: str, conflicts: Sequence[Conflict]) -> None:
        self.change_set_id = change_set_id
        self.conflicts = tuple(conflicts)
        super().__init__(
            f"cannot revert change set {change_set_id}: "
            + "; ".join(str(c) for c in conflicts)
            + "; revert with force to overwrite these changes"
        )


def plan_revert(
    change_set: Sequence[Revision], latest: Mapping[ItemRef, Revision], *, force: bool = False
) -> list[InverseOperation]:
    """Steps undoing a change set, newest first; refused if an item changed since, unless forced."""
    change_set_ids = {r.change_set_id for r in change_set}
    if len(change_set_ids) != 1:
        raise ValueError(f"expected the revisions of one change set, got {len(change_set_ids)}")
    (change_set_id,) = change_set_ids
    first: dict[ItemRef, Revision] = {}
    last: dict[ItemRef, Revision] = {}
    for revision in sorted(change_set, key=lambda r: r.sequence):
        first.setdefault(revision.item, revision)
        last[revision.item] = revision
    conflicts = [
        Conflict(item=item, change_set_id=newest.change_set_id, sequence=newest.sequence)
        for item in last
        if (newest := latest.get(item, last[item])).sequence > last[item].sequence
    ]
    if conflicts and not force:
        raise RevertConflictError(change_set_id, conflicts)
    plan = []
    for item in sorted(first, key=lambda i: first[i].sequence, reverse=True):
        current = latest.get(item, last[item]).after
        target = first[item].before
        operation = operation_between(current, target)
        if operation is not None and current != target:
            plan.append(
                InverseOperation(item=item, operation=operation, expected=current, target=target)
            )
    return plan
