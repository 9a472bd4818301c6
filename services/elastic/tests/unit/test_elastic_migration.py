"""Batch migration: evacuating a zone or pool in batches within capacity, keeping apps available."""

import pytest

from elastic.domain import (
    AppRequirement,
    HostCapacity,
    InstanceRequest,
    MigrationPlan,
    PlacedInstance,
    Scope,
    plan_migration,
)

pytestmark = pytest.mark.unit

ZONE_A = Scope(kind="zone", name="a")
SMALL = InstanceRequest(cpu_millis=500, memory_mib=512)


def host(host_id: str, zone: str, cpu: int = 2000, pool: str = "general") -> HostCapacity:
    return HostCapacity(
        host_id=host_id, zone=zone, pool=pool, free_cpu_millis=cpu, free_memory_mib=cpu * 2
    )


HOSTS = [host("h-a1", "a", cpu=8000), host("h-b1", "b"), host("h-c1", "c")]


def instance(instance_id: str, zone: str, ready: bool = True) -> PlacedInstance:
    return PlacedInstance(
        instance_id=instance_id,
        app_id=instance_id.split("-")[0],
        host_id=f"h-{zone}1",
        zone=zone,
        pool="general",
        ready=ready,
    )


INSTANCES = [
    instance("web-0", "a"),
    instance("web-1", "a"),
    instance("web-2", "a"),
    instance("web-3", "b"),
    instance("web-4", "c"),
    instance("api-0", "a"),
    instance("api-x", "a", ready=False),
    instance("api-1", "b"),
]
APPS = {
    "web": AppRequirement(app_id="web", request=SMALL, min_available=4),
    "api": AppRequirement(app_id="api", request=SMALL, min_available=1),
}


def moves(plan: MigrationPlan) -> list[list[tuple[str, str]]]:
    return [[(m.instance_id, m.to_host) for m in batch.moves] for batch in plan.batches]


def test_evacuating_a_zone_moves_each_app_in_batches_that_keep_its_min_available() -> None:
    plan = plan_migration(ZONE_A, INSTANCES, HOSTS, APPS, max_batch_size=10)

    # web has 5 ready and needs 4, so one web instance moves per batch; the unready api
    # instance moves first at no cost, and api may take one ready instance down per batch.
    assert moves(plan) == [
        [("api-x", "h-c1"), ("api-0", "h-b1"), ("web-0", "h-b1")],
        [("web-1", "h-c1")],
        [("web-2", "h-b1")],
    ]
    assert [b.number for b in plan.batches] == [1, 2, 3]
    assert plan.unmoved == ()


def test_no_instance_is_placed_inside_the_scope_being_evacuated() -> None:
    plan = plan_migration(ZONE_A, INSTANCES, HOSTS, APPS, max_batch_size=10)

    assert all(m.to_zone != "a" and m.from_zone == "a" for b in plan.batches for m in b.moves)


def test_batches_never_exceed_the_maximum_batch_size() -> None:
    plan = plan_migration(ZONE_A, INSTANCES, HOSTS, APPS, max_batch_size=2)

    assert [len(b.moves) for b in plan.batches] == [2, 1, 1, 1]
    assert sum(len(b.moves) for b in plan.batches) == 5


def test_a_failed_zone_is_re_placed_in_one_batch_spread_over_the_healthy_zones() -> None:
    failed = [instance(f"web-{n}", "a", ready=False) for n in range(4)]

    plan = plan_migration(ZONE_A, failed, HOSTS, {"web": APPS["web"]}, max_batch_size=10)

    assert len(plan.batches) == 1
    assert sorted(m.to_zone for m in plan.batches[0].moves) == ["b", "b", "c", "c"]


def test_an_app_with_no_ready_instance_to_spare_is_left_in_place_with_the_reason() -> None:
    apps = {**APPS, "db": AppRequirement(app_id="db", request=SMALL, min_available=1)}

    plan = plan_migration(
        ZONE_A, [*INSTANCES, instance("db-0", "a")], HOSTS, apps, max_batch_size=10
    )

    assert [(u.instance_id, u.reason) for u in plan.unmoved] == [
        ("db-0", "moving it would leave fewer than 1 ready instances of db; scale up first")
    ]


def test_instances_that_fit_nowhere_are_reported_and_the_rest_still_move() -> None:
    tight = [host("h-b1", "b", cpu=1000)]
    failed = [instance(f"web-{n}", "a", ready=False) for n in range(3)]

    plan = plan_migration(ZONE_A, failed, tight, {"web": APPS["web"]}, max_batch_size=10)

    assert moves(plan) == [[("web-0", "h-b1"), ("web-1", "h-b1")]]
    assert [(u.instance_id, u.reason) for u in plan.unmoved] == [
        ("web-2", "no host outside zone a has 500m CPU and 512Mi free")
    ]


def test_a_target_scope_limits_where_instances_may_go() -> None:
    hosts = [*HOSTS, host("h-d1", "d", cpu=8000, pool="spare")]
    failed = [instance(f"web-{n}", "a", ready=False) for n in range(2)]

    plan = plan_migration(
        ZONE_A,
        failed,
        hosts,
        {"web": APPS["web"]},
        max_batch_size=10,
        target=Scope(kind="pool", name="spare"),
    )

    assert moves(plan) == [[("web-0", "h-d1"), ("web-1", "h-d1")]]


def test_instances_of_an_app_without_requirements_are_refused() -> None:
    with pytest.raises(ValueError, match="no requirements for applications api"):
        plan_migration(ZONE_A, INSTANCES, HOSTS, {"web": APPS["web"]}, max_batch_size=10)
