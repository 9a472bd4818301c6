"""The healing change asked for when instances die outside any change."""

from __future__ import annotations

import pytest

from pipeline.domain import CauseKind, ChangeKind
from pipeline.liveness import Member, allowed_zones, failed_zones, heal

pytestmark = pytest.mark.unit


def test_a_zone_fails_for_an_application_only_when_all_its_instances_there_died() -> None:
    dead = [Member("a", "v1", "z1"), Member("b", "v1", "z2")]
    survivors = [Member("c", "v1", "z2"), Member("d", "v1", "z3")]
    assert failed_zones(dead, survivors) == {"z1"}


def test_the_replacements_go_to_every_other_zone_or_anywhere_when_none_is_left() -> None:
    assert allowed_zones({"z1"}, ["z1", "z2", "z3"]) == {"z2", "z3"}
    assert allowed_zones({"z1"}, ["z1"]) == frozenset()
    assert allowed_zones(set(), ["z1", "z2"]) == {"z1", "z2"}


def test_healing_scales_back_to_the_desired_count_away_from_the_failed_zone() -> None:
    dead = [Member("i-2", "v1", "z1"), Member("i-1", "v1", "z1")]
    survivors = [Member("i-3", "v1", "z2")]
    change = heal("shop", dead, survivors, 3, ["z1", "z2", "z3"])
    assert change.kind is ChangeKind.SCALE
    assert (change.target.replicas, change.target.version) == (3, "v1")
    assert change.target.placement.zones == {"z2", "z3"}
    assert change.request_id.startswith("pipeline/shop/heal-")
    assert change.actor == "service:pipeline"
    assert change.cause.kind is CauseKind.EVENT and change.cause_text == "i-1,i-2"
    assert change.reason.startswith("2 instances exited: i-1, i-2")
    assert "zone z1 lost every instance" in change.reason


def test_the_same_dead_instances_give_the_same_request_id_whatever_their_order() -> None:
    one = heal("shop", [Member("a", "v1", "z1"), Member("b", "v1", "z2")], [], 2, ["z1", "z2"])
    two = heal("shop", [Member("b", "v1", "z2"), Member("a", "v1", "z1")], [], 2, ["z1", "z2"])
    other = heal("shop", [Member("a", "v1", "z1")], [], 2, ["z1", "z2"])
    assert one.request_id == two.request_id != other.request_id
    # every zone lost everything: placing anywhere beats placing nowhere
    assert one.target.placement.anywhere and one.target.version == "v1"


class _FlakyDriver:
    """A driver whose record of one instance cannot be read."""

    def alive(self, instance_id: str) -> bool:
        if instance_id == "unreadable":
            raise OSError("record unreadable")
        return instance_id == "running"


def test_an_instance_whose_liveness_cannot_be_told_counts_as_alive_and_the_others_are_told() -> (
    None
):
    from pipeline import metrics
    from pipeline.executor import Executor

    executor = Executor(None, None, None, _FlakyDriver(), None)  # type: ignore[arg-type]
    before = metrics.PROBE_FAILURES._value.get()
    told = {i: executor._alive(i) for i in ("running", "unreadable", "gone")}
    assert told == {"running": True, "unreadable": True, "gone": False}
    assert metrics.PROBE_FAILURES._value.get() == before + 1
