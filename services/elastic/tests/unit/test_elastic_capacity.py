"""Capacity: free slots per zone from hosts and quotas, and placement under a zone spread rule."""

import pytest

from elastic.domain import HostCapacity, InstanceRequest, Quota, SpreadRule, place, zone_slots

pytestmark = pytest.mark.unit

SMALL = InstanceRequest(cpu_millis=500, memory_mib=1024)


def host(
    host_id: str, zone: str, cpu: int, memory: int, pool: str = "general", schedulable: bool = True
) -> HostCapacity:
    return HostCapacity(
        host_id=host_id,
        zone=zone,
        pool=pool,
        free_cpu_millis=cpu,
        free_memory_mib=memory,
        schedulable=schedulable,
    )


def test_a_hosts_slots_are_limited_by_its_scarcer_resource() -> None:
    assert host("h1", "a", cpu=2000, memory=3072).slots(SMALL) == 3
    assert host("h1", "a", cpu=1200, memory=8192).slots(SMALL) == 2


def test_zone_slots_add_up_schedulable_hosts_per_zone() -> None:
    hosts = [
        host("h1", "a", 2000, 8192),
        host("h2", "a", 1000, 8192),
        host("h3", "b", 500, 512),
        host("h4", "c", 4000, 8192, schedulable=False),
    ]

    assert zone_slots(hosts, SMALL) == {"a": 6, "b": 0}


def test_zone_slots_count_only_the_pools_asked_for() -> None:
    hosts = [host("h1", "a", 2000, 8192, pool="general"), host("h2", "a", 2000, 8192, pool="gpu")]

    assert zone_slots(hosts, SMALL, pools={"gpu"}) == {"a": 4}


def test_a_zone_quota_caps_the_slots_in_that_zone() -> None:
    hosts = [host("h1", "a", 4000, 16384), host("h2", "b", 4000, 16384)]
    quota = Quota(scope="zone", name="a", cpu_millis=1000, memory_mib=99999)

    assert zone_slots(hosts, SMALL, [quota]) == {"a": 2, "b": 8}


def test_a_pool_quota_is_shared_across_zones_in_zone_order() -> None:
    hosts = [host("h1", "a", 2000, 8192), host("h2", "b", 2000, 8192)]
    quota = Quota(scope="pool", name="general", cpu_millis=3000, memory_mib=99999)

    assert zone_slots(hosts, SMALL, [quota]) == {"a": 4, "b": 2}


def test_scaling_up_fills_the_emptiest_zones_first() -> None:
    placement = place({"a": 3, "b": 1}, 7, {"a": 10, "b": 10, "c": 10}, SpreadRule())

    assert placement.counts == {"a": 3, "b": 2, "c": 2}
    assert placement.stopped_by is None


def test_scaling_up_stops_when_no_zone_has_room() -> None:
    placement = place({"a": 1, "b": 1}, 6, {"a": 1, "b": 2}, SpreadRule(max_skew=None))

    assert placement.counts == {"a": 2, "b": 3}
    assert placement.stopped_by == "capacity"
    assert placement.reason == "only 5 instances fit (zones: a, b)"


def test_a_full_zone_limits_the_others_to_the_maximum_skew() -> None:
    placement = place(
        {"a": 2, "b": 2, "c": 2}, 12, {"a": 0, "b": 10, "c": 10}, SpreadRule(max_skew=1)
    )

    assert placement.counts == {"a": 2, "b": 3, "c": 3}
    assert placement.stopped_by == "spread"
    assert placement.reason == "zone a is full at 2 and max skew is 1"


def test_scaling_down_empties_ineligible_zones_then_the_fullest() -> None:
    placement = place({"a": 3, "b": 2, "dead": 2}, 4, {"a": 5, "b": 5}, SpreadRule())

    assert placement.counts == {"a": 2, "b": 2}


def test_running_in_fewer_zones_than_the_rule_wants_is_noted() -> None:
    placement = place({}, 3, {"a": 5}, SpreadRule(max_skew=None, min_zones=2))

    assert placement.counts == {"a": 3}
    assert placement.notes == ("runs in 1 zones, spread rule wants 2",)
