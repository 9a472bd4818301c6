"""Planning and rollback planning: batches that fit the hosts, spread zones and undo cleanly."""

import random
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from itertools import count, cycle

import pytest

from pipeline.domain import (
    Batch,
    BatchSpec,
    Canary,
    Cause,
    CauseKind,
    Change,
    ChangeKind,
    ChangeState,
    Host,
    Instance,
    InstanceStatus,
    InsufficientCapacity,
    Placement,
    Plan,
    PlanningError,
    Resources,
    Target,
    plan_change,
    plan_rollback,
)

pytestmark = pytest.mark.unit

T0 = datetime(2024, 5, 6, 10, 0, tzinfo=UTC)
REQUEST = Resources(cpu=0.5, memory_mb=512)
ROOMY = Resources(cpu=8, memory_mb=8192)
FULL = Resources(cpu=0, memory_mb=0)
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
        target=Target.model_validate(target or {"version": "v2"}),
    )


def hosts_in(
    zones: Iterable[str] = "abc", per_zone: int = 2, free: Resources = ROOMY, pool: str = "p1"
) -> list[Host]:
    return [
        Host(id=f"{pool}-{zone}{n}", zone=zone, pool=pool, free=free)
        for zone in zones
        for n in range(1, per_zone + 1)
    ]


def instances_on(hosts: list[Host], count_: int, version: str = "v1") -> list[Instance]:
    """Spread instances over the hosts in turn, so zones get equal shares."""
    by_zone = sorted(hosts, key=lambda h: (h.id[-1], h.zone))
    return [
        Instance(id=f"i{n}", version=version, host=host.id, zone=host.zone)
        for n, host in zip(range(1, count_ + 1), cycle(by_zone), strict=False)
    ]


class World:
    """A fake fleet that applies plans action by action and checks the invariants on the way."""

    def __init__(self, hosts: list[Host], instances: list[Instance], request: Resources = REQUEST):
        self.hosts = {host.id: host for host in hosts}
        self.cpu = {host.id: host.free.millicpu for host in hosts}
        self.memory = {host.id: host.free.memory_mb for host in hosts}
        self.instances = {i.id: i for i in instances}
        self.request = request
        self.lowest_available = self.available

    @property
    def available(self) -> int:
        return sum(i.status is InstanceStatus.RUNNING for i in self.instances.values())

    def zone_counts(self) -> Counter[str]:
        return Counter(
            i.zone for i in self.instances.values() if i.status is InstanceStatus.RUNNING
        )

    def free_hosts(self) -> list[Host]:
        return [
            host.model_copy(
                update={
                    "free": Resources(cpu=self.cpu[h] / 1000, memory_mb=self.memory[h]),
                }
            )
            for h, host in self.hosts.items()
        ]

    def stop(self, instance_id: str) -> None:
        instance = self.instances.pop(instance_id)
        self.cpu[instance.host] += self.request.millicpu
        self.memory[instance.host] += self.request.memory_mb

    def start(self, action_id: str, version: str, host: str, zone: str, healthy: bool) -> None:
        assert action_id not in self.instances, "an instance id is used twice"
        assert self.hosts[host].zone == zone
        self.cpu[host] -= self.request.millicpu
        self.memory[host] -= self.request.memory_mb
        assert self.cpu[host] >= 0 and self.memory[host] >= 0, f"host {host} is overcommitted"
        status = InstanceStatus.RUNNING if healthy else InstanceStatus.UNHEALTHY
        self.instances[action_id] = Instance(
            id=action_id, version=version, host=host, zone=zone, status=status
        )

    def run(self, plan: Plan, keep_zones: set[str], floor: int) -> None:
        for batch in plan.batches:
            self.run_batch(batch, keep_zones, floor)

    def run_batch(self, batch: Batch, keep_zones: set[str], floor: int) -> None:
        for stop in batch.stop_first:
            self.stop(stop.instance_id)
        self.check(keep_zones, floor)
        for start in batch.start:
            self.start(start.instance_id, start.version, start.host, start.zone, healthy=True)
        for stop in batch.stop:
            self.stop(stop.instance_id)
        self.check(keep_zones, floor)

    def check(self, keep_zones: set[str], floor: int) -> None:
        self.lowest_available = min(self.lowest_available, self.available)
        counts = self.zone_counts()
        emptied = {zone for zone in keep_zones if not counts[zone]}
        assert not emptied, f"a batch took out every instance in zones {emptied}"
        assert self.available >= floor, f"{self.available} running, below {floor}"


def run_checked(world: World, plan: Plan, desired: int, max_unavailable: int) -> None:
    """Run a plan on a copy first to learn which zones end up with instances, then check it."""
    dry = World(list(world.hosts.values()), list(world.instances.values()))
    dry.run(plan, set(), -1)
    keep = set(world.zone_counts()) & set(dry.zone_counts())
    floor = min(world.available, desired) - max_unavailable
    assert plan.min_running == max(0, floor)
    world.run(plan, keep, floor)


# Deploy


def test_a_deploy_replaces_every_old_instance_surge_first() -> None:
    hosts = hosts_in()
    world = World(hosts, instances_on(hosts, 6))

    plan = plan_change(
        a_change(), list(world.instances.values()), hosts, REQUEST, BatchSpec(size=2)
    )

    assert len(plan.batches) == 3
    assert all(not batch.stop_first for batch in plan.batches)
    assert all(len(batch.start) == len(batch.stop) == 2 for batch in plan.batches)
    run_checked(world, plan, desired=6, max_unavailable=0)
    assert {i.version for i in world.instances.values()} == {"v2"}
    assert world.zone_counts() == {"a": 2, "b": 2, "c": 2}


def test_every_new_instance_names_the_instance_it_replaces_in_its_zone() -> None:
    hosts = hosts_in()
    current = instances_on(hosts, 6)
    zone_of = {i.id: i.zone for i in current}

    plan = plan_change(a_change(), current, hosts, REQUEST, BatchSpec(size=3))

    for batch in plan.batches:
        assert {start.replaces for start in batch.start} == {s.instance_id for s in batch.stop}
        assert all(start.zone == zone_of[start.replaces or ""] for start in batch.start)


def test_each_batch_spreads_its_replacements_across_zones() -> None:
    hosts = hosts_in()

    plan = plan_change(a_change(), instances_on(hosts, 9), hosts, REQUEST, BatchSpec(size=3))

    for batch in plan.batches:
        assert {stop.zone for stop in batch.stop} == {"a", "b", "c"}


def test_new_instances_get_ids_derived_from_the_change() -> None:
    hosts = hosts_in()
    change = a_change()

    plan = plan_change(change, instances_on(hosts, 3), hosts, REQUEST, BatchSpec(size=2))

    ids = [start.instance_id for batch in plan.batches for start in batch.start]
    assert ids == [f"{change.id}-1", f"{change.id}-2", f"{change.id}-3"]


def test_planning_the_same_change_twice_gives_the_same_plan() -> None:
    hosts = hosts_in()
    current = instances_on(hosts, 7)
    change = a_change()

    first = plan_change(change, current, hosts, REQUEST, BatchSpec(percent=25))

    assert plan_change(change, current[::-1], hosts[::-1], REQUEST, BatchSpec(percent=25)) == first


def test_batches_by_percent_round_up() -> None:
    hosts = hosts_in()

    plan = plan_change(a_change(), instances_on(hosts, 10), hosts, REQUEST, BatchSpec(percent=30))

    assert [len(batch.start) for batch in plan.batches] == [3, 3, 3, 1]
    assert plan.batch_size == 3


def test_the_first_batch_is_a_canary_of_its_own_size() -> None:
    hosts = hosts_in()
    spec = BatchSpec(size=4, canary=Canary(instances=1))

    plan = plan_change(a_change(), instances_on(hosts, 9), hosts, REQUEST, spec)

    assert [len(batch.start) for batch in plan.batches] == [1, 4, 4]
    assert plan.canary == Canary(instances=1)


def test_a_deploy_of_the_running_version_has_nothing_to_do() -> None:
    hosts = hosts_in()

    plan = plan_change(a_change(), instances_on(hosts, 3, "v2"), hosts, REQUEST, BatchSpec(size=1))

    assert plan.batches == ()


def test_a_deploy_can_change_the_count_too() -> None:
    hosts = hosts_in()
    world = World(hosts, instances_on(hosts, 3))
    change = a_change(version="v2", replicas=5)

    plan = plan_change(change, list(world.instances.values()), hosts, REQUEST, BatchSpec(size=2))

    run_checked(world, plan, desired=5, max_unavailable=0)
    assert Counter(i.version for i in world.instances.values()) == {"v2": 5}
    assert max(world.zone_counts().values()) - min(world.zone_counts().values()) <= 1


def test_a_deploy_that_shrinks_removes_old_instances_instead_of_replacing_them() -> None:
    hosts = hosts_in()
    current = instances_on(hosts, 6)
    world = World(hosts, current)

    plan = plan_change(
        a_change(version="v2", replicas=3), current, hosts, REQUEST, BatchSpec(size=3)
    )

    assert sum(len(batch.start) for batch in plan.batches) == 3
    run_checked(world, plan, desired=3, max_unavailable=0)
    assert world.zone_counts() == {"a": 1, "b": 1, "c": 1}


def test_a_deploy_remembers_the_version_it_replaces() -> None:
    hosts = hosts_in()
    current = [*instances_on(hosts, 3), Instance(id="odd", version="v0", host="p1-a1", zone="a")]

    plan = plan_change(a_change(), current, hosts, REQUEST, BatchSpec(size=2))

    assert (plan.version, plan.previous_version) == ("v2", "v1")


def test_stopped_instances_are_left_alone() -> None:
    hosts = hosts_in()
    gone = Instance(id="gone", version="v1", host="p1-a1", zone="a", status=InstanceStatus.STOPPED)

    plan = plan_change(a_change(), [gone], hosts, REQUEST, BatchSpec(size=1))

    assert plan.batches == ()


def test_a_placement_keeps_new_instances_in_its_pools() -> None:
    hosts = hosts_in(pool="old") + hosts_in(pool="new")
    current = instances_on(hosts_in(pool="old"), 3)
    change = a_change(version="v2", placement=Placement(pools=frozenset({"new"})))

    plan = plan_change(change, current, hosts, REQUEST, BatchSpec(size=3))

    assert {start.host.split("-")[0] for start in plan.batches[0].start} == {"new"}


def test_new_instances_go_to_the_host_with_the_most_room() -> None:
    roomy = Host(id="roomy", zone="a", pool="p1", free=ROOMY)
    tight = Host(id="tight", zone="a", pool="p1", free=REQUEST)
    current = [Instance(id="i1", version="v1", host="tight", zone="a")]

    plan = plan_change(a_change(), current, [tight, roomy], REQUEST, BatchSpec(size=1))

    assert plan.batches[0].start[0].host == "roomy"


# Capacity


def test_without_room_to_surge_a_replacement_stops_its_old_instance_first() -> None:
    hosts = hosts_in(free=FULL)
    world = World(hosts, instances_on(hosts, 6))

    plan = plan_change(
        a_change(),
        list(world.instances.values()),
        hosts,
        REQUEST,
        BatchSpec(size=1, max_unavailable=1),
    )

    assert all(len(batch.stop_first) == 1 and not batch.stop for batch in plan.batches)
    assert all(b.start[0].host == b.stop_first[0].host for b in plan.batches)
    run_checked(world, plan, desired=6, max_unavailable=1)
    assert world.lowest_available == 5


def test_stopping_first_never_exceeds_max_unavailable() -> None:
    hosts = hosts_in(free=FULL)
    current = instances_on(hosts, 6)

    with pytest.raises(InsufficientCapacity) as error:
        plan_change(a_change(), current, hosts, REQUEST, BatchSpec(size=3, max_unavailable=2))

    assert [s.instances for s in error.value.shortages] == [1]


def test_stopping_first_never_takes_out_a_zones_only_instance() -> None:
    hosts = hosts_in("ab", per_zone=1, free=FULL)
    current = [
        Instance(id="a1", version="v1", host="p1-a1", zone="a"),
        Instance(id="b1", version="v1", host="p1-b1", zone="b"),
        Instance(id="b2", version="v1", host="p1-b1", zone="b"),
    ]

    with pytest.raises(InsufficientCapacity) as error:
        plan_change(a_change(), current, hosts, REQUEST, BatchSpec(size=1, max_unavailable=5))

    assert error.value.shortages[0].zone == "a"


def test_an_unhealthy_instance_may_be_stopped_first_at_no_cost() -> None:
    hosts = hosts_in("a", per_zone=1, free=FULL)
    sick = Instance(id="a1", version="v1", host="p1-a1", zone="a", status=InstanceStatus.UNHEALTHY)

    plan = plan_change(a_change(), [sick], hosts, REQUEST, BatchSpec(size=1))

    assert plan.batches[0].stop_first[0].instance_id == "a1"


def test_a_deploy_without_room_fails_saying_how_much_is_missing_where() -> None:
    hosts = hosts_in("ab", per_zone=1, free=FULL)
    current = [
        Instance(id="a1", version="v1", host="p1-a1", zone="a"),
        Instance(id="b1", version="v1", host="p1-b1", zone="b"),
    ]

    with pytest.raises(InsufficientCapacity) as error:
        plan_change(a_change(), current, hosts, REQUEST, BatchSpec(size=2))

    assert [(s.zone, s.batch, s.instances) for s in error.value.shortages] == [
        ("a", 1, 1),
        ("b", 1, 1),
    ]
    assert "zone a lacks room for 1 instance(s) in batch 1" in str(error.value)
    assert "need cpu 0.5 and memory 512 MiB" in str(error.value)
    assert "cpu 0 and memory 0 MiB free" in str(error.value)


def test_a_scale_out_beyond_capacity_fails_saying_how_much_is_missing() -> None:
    hosts = hosts_in("ab", per_zone=1, free=Resources(cpu=1, memory_mb=4096))
    current = instances_on(hosts, 2)

    with pytest.raises(InsufficientCapacity) as error:
        plan_change(
            a_change(ChangeKind.SCALE, replicas=8), current, hosts, REQUEST, BatchSpec(size=6)
        )

    shortages = error.value.shortages
    assert sum(s.instances for s in shortages) == 2
    assert sum(s.cpu for s in shortages) == 1.0
    assert sum(s.memory_mb for s in shortages) == 1024


def test_room_freed_by_one_batch_serves_the_next() -> None:
    hosts = hosts_in("a", per_zone=2, free=REQUEST)
    world = World(hosts, instances_on(hosts, 4))

    plan = plan_change(
        a_change(), list(world.instances.values()), hosts, REQUEST, BatchSpec(size=2)
    )

    assert len(plan.batches) == 2
    run_checked(world, plan, desired=4, max_unavailable=0)


def test_cpu_fractions_add_up_exactly() -> None:
    tenth = Resources(cpu=0.1, memory_mb=1)
    host = Host(id="h", zone="a", pool="p1", free=Resources(cpu=0.3, memory_mb=3))

    plan = plan_change(
        a_change(ChangeKind.SCALE, version="v1", replicas=3), [], [host], tenth, BatchSpec(size=3)
    )

    assert len(plan.batches[0].start) == 3


# Scale


def test_a_scale_out_adds_instances_balanced_across_zones() -> None:
    hosts = hosts_in()
    current = instances_on(hosts, 3)[:2]
    world = World(hosts, current)

    plan = plan_change(
        a_change(ChangeKind.SCALE, replicas=6), current, hosts, REQUEST, BatchSpec(size=2)
    )

    assert plan.batches[0].start[0].zone == "c"
    run_checked(world, plan, desired=6, max_unavailable=0)
    assert world.zone_counts() == {"a": 2, "b": 2, "c": 2}
    assert {i.version for i in world.instances.values()} == {"v1"}


def test_a_scale_out_skips_zones_without_room() -> None:
    hosts = hosts_in("ab") + hosts_in("c", free=FULL)
    current = instances_on(hosts_in(), 3)

    plan = plan_change(
        a_change(ChangeKind.SCALE, replicas=7), current, hosts, REQUEST, BatchSpec(size=4)
    )

    assert Counter(s.zone for b in plan.batches for s in b.start) == {"a": 2, "b": 2}


def test_a_scale_in_removes_from_the_zone_with_most_instances_first() -> None:
    hosts = hosts_in()
    current = [Instance(id=f"a{n}", version="v1", host="p1-a1", zone="a") for n in range(3)] + [
        Instance(id="b0", version="v1", host="p1-b1", zone="b"),
        Instance(id="c0", version="v1", host="p1-c1", zone="c"),
    ]

    plan = plan_change(
        a_change(ChangeKind.SCALE, replicas=3), current, hosts, REQUEST, BatchSpec(size=1)
    )

    assert [b.stop[0].zone for b in plan.batches] == ["a", "a"]
    assert all(not b.start for b in plan.batches)


def test_a_scale_in_removes_unhealthy_instances_first() -> None:
    hosts = hosts_in("a")
    current = [
        Instance(id="a1", version="v1", host="p1-a1", zone="a"),
        Instance(id="a2", version="v1", host="p1-a1", zone="a", status=InstanceStatus.UNHEALTHY),
        Instance(id="a3", version="v1", host="p1-a2", zone="a"),
    ]

    plan = plan_change(
        a_change(ChangeKind.SCALE, replicas=2), current, hosts, REQUEST, BatchSpec(size=1)
    )

    assert plan.batches[0].stop[0].instance_id == "a2"


def test_a_scale_to_the_current_count_has_nothing_to_do() -> None:
    hosts = hosts_in()

    plan = plan_change(
        a_change(ChangeKind.SCALE, replicas=3),
        instances_on(hosts, 3),
        hosts,
        REQUEST,
        BatchSpec(size=1),
    )

    assert plan.batches == ()


def test_a_scale_out_of_an_application_with_no_instance_needs_a_version() -> None:
    with pytest.raises(PlanningError, match="give a version"):
        plan_change(
            a_change(ChangeKind.SCALE, replicas=2), [], hosts_in(), REQUEST, BatchSpec(size=1)
        )


def test_a_scale_to_zero_of_an_empty_application_has_nothing_to_do() -> None:
    plan = plan_change(
        a_change(ChangeKind.SCALE, replicas=0), [], hosts_in(), REQUEST, BatchSpec(size=1)
    )

    assert plan.batches == ()


# Migrate and restart


def test_a_migration_moves_instances_out_of_a_zone_balanced_across_the_rest() -> None:
    hosts = hosts_in()
    current = instances_on(hosts, 6)
    world = World(hosts, current)
    change = a_change(ChangeKind.MIGRATE, placement=Placement(zones=frozenset({"b", "c"})))

    plan = plan_change(change, current, hosts, REQUEST, BatchSpec(size=1))

    assert len(plan.batches) == 2
    run_checked(world, plan, desired=6, max_unavailable=0)
    assert world.zone_counts() == {"b": 3, "c": 3}


def test_a_migration_between_pools_keeps_each_instance_in_its_zone() -> None:
    hosts = hosts_in(pool="old") + hosts_in(pool="new")
    current = instances_on(hosts_in(pool="old"), 6)
    world = World(hosts, current)
    change = a_change(ChangeKind.MIGRATE, placement=Placement(pools=frozenset({"new"})))

    plan = plan_change(change, current, hosts, REQUEST, BatchSpec(size=3))

    run_checked(world, plan, desired=6, max_unavailable=0)
    assert world.zone_counts() == {"a": 2, "b": 2, "c": 2}
    assert all(i.host.startswith("new-") for i in world.instances.values())


def test_a_migration_without_any_destination_host_fails() -> None:
    change = a_change(ChangeKind.MIGRATE, placement=Placement(zones=frozenset({"z"})))

    with pytest.raises(PlanningError, match="no host lies in the allowed pools and zones"):
        plan_change(change, instances_on(hosts_in(), 2), hosts_in(), REQUEST, BatchSpec(size=1))


def test_a_migration_by_pool_needs_to_know_every_instances_host() -> None:
    change = a_change(ChangeKind.MIGRATE, placement=Placement(pools=frozenset({"new"})))
    stray = Instance(id="x", version="v1", host="unknown", zone="a")

    with pytest.raises(PlanningError, match="host unknown"):
        plan_change(change, [stray], hosts_in(pool="new"), REQUEST, BatchSpec(size=1))


def test_a_migration_with_nothing_outside_the_placement_has_nothing_to_do() -> None:
    change = a_change(ChangeKind.MIGRATE, placement=Placement(zones=frozenset({"a", "b", "c"})))

    plan = plan_change(change, instances_on(hosts_in(), 3), hosts_in(), REQUEST, BatchSpec(size=1))

    assert plan.batches == ()


def test_a_restart_replaces_each_instance_with_the_same_version_on_its_host() -> None:
    hosts = hosts_in()
    current = [*instances_on(hosts, 3), Instance(id="old", version="v0", host="p1-a2", zone="a")]
    world = World(hosts, current)

    plan = plan_change(a_change(ChangeKind.RESTART), current, hosts, REQUEST, BatchSpec(size=2))

    by_id = {i.id: i for i in current}
    for batch in plan.batches:
        for start in batch.start:
            old = by_id[start.replaces or ""]
            assert (start.version, start.host) == (old.version, old.host)
    run_checked(world, plan, desired=4, max_unavailable=0)
    assert Counter(i.version for i in world.instances.values()) == {"v1": 3, "v0": 1}
    assert not set(by_id) & set(world.instances)


def test_a_plan_survives_a_round_trip_through_json() -> None:
    hosts = hosts_in()
    plan = plan_change(
        a_change(), instances_on(hosts, 5), hosts, REQUEST, BatchSpec(size=2, canary=Canary())
    )

    assert Plan.model_validate_json(plan.model_dump_json()) == plan


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"size": 2, "percent": 10},
        {"size": 0},
        {"percent": 101},
        {"size": 1, "max_unavailable": -1},
    ],
)
def test_an_invalid_batch_spec_is_refused(fields: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        BatchSpec.model_validate(fields)


# Properties over random fleets


def random_fleet(rng: random.Random) -> tuple[list[Host], list[Instance]]:
    zones = "abcd"[: rng.randint(1, 4)]
    hosts = [
        Host(
            id=f"h-{zone}{n}",
            zone=zone,
            pool=rng.choice(["p1", "p2"]),
            free=Resources(cpu=slots * 0.5, memory_mb=slots * 512),
        )
        for zone in zones
        for n, slots in enumerate(rng.choices([0, 0, 1, 2, 4, 8], k=rng.randint(1, 3)))
    ]
    instances = []
    for n in range(rng.randint(1, 14)):
        host = rng.choice(hosts)
        version = "v0" if rng.random() < 0.1 else "v1"
        instances.append(Instance(id=f"i{n}", version=version, host=host.id, zone=host.zone))
    return hosts, instances


def random_spec(rng: random.Random) -> BatchSpec:
    canary = Canary(instances=rng.randint(1, 3)) if rng.random() < 0.3 else None
    if rng.random() < 0.5:
        return BatchSpec(size=rng.randint(1, 5), canary=canary, max_unavailable=rng.randint(0, 2))
    return BatchSpec(percent=rng.randint(10, 100), canary=canary, max_unavailable=rng.randint(0, 2))


def random_change(rng: random.Random, instances: list[Instance]) -> tuple[Change, int]:
    kind = rng.choice(list(ChangeKind))
    replicas = max(0, len(instances) + rng.randint(-4, 4))
    if kind in (ChangeKind.DEPLOY, ChangeKind.ROLLBACK):
        if rng.random() < 0.5:
            return a_change(kind, version="v2"), len(instances)
        return a_change(kind, version="v2", replicas=replicas), replicas
    if kind is ChangeKind.SCALE:
        return a_change(kind, replicas=replicas), replicas
    if kind is ChangeKind.MIGRATE:
        rule = rng.choice([{"zones": frozenset({"b", "c", "d"})}, {"pools": frozenset({"p2"})}])
        return a_change(kind, placement=Placement.model_validate(rule)), len(instances)
    return a_change(kind), len(instances)


def test_random_plans_keep_every_zone_and_enough_capacity_after_each_batch() -> None:
    rng = random.Random(20240506)
    planned = 0
    for _ in range(400):
        hosts, instances = random_fleet(rng)
        change, desired = random_change(rng, instances)
        spec = random_spec(rng)
        try:
            plan = plan_change(change, instances, hosts, REQUEST, spec)
        except PlanningError:
            continue
        planned += 1
        world = World(hosts, instances)

        run_checked(world, plan, desired, spec.max_unavailable)

        assert len(world.instances) == desired
        if change.kind is ChangeKind.DEPLOY:
            assert {i.version for i in world.instances.values()} <= {"v2"}
        if change.kind is ChangeKind.MIGRATE:
            rule = change.target.placement
            pools = {h.id: h.pool for h in hosts}
            assert all(rule.allows(i.zone, pools[i.host]) for i in world.instances.values())
    assert planned > 150


# Rollback


def rolled_out(
    hosts: list[Host], instances: list[Instance], change: Change, spec: BatchSpec, applied: int
) -> World:
    """Plan the change, run `applied` whole batches, and start the next one that then fails."""
    change.plan(plan_change(change, instances, hosts, REQUEST, spec), T0)
    world = World(hosts, instances)
    assert change.rollout_plan is not None
    for batch in change.rollout_plan.batches[:applied]:
        change.start_batch(T0)
        world.run_batch(batch, set(), -1)
        change.batch_succeeded(T0)
        if change.state is ChangeState.PAUSED:
            change.resume(T0)
    return world


def test_a_rollback_returns_every_instance_to_the_previous_version() -> None:
    hosts = hosts_in()
    before = instances_on(hosts, 6)
    change = a_change()
    world = rolled_out(hosts, before, change, BatchSpec(size=2), applied=2)
    change.start_batch(T0)
    change.batch_failed("health check timed out", T0)

    rollback = plan_rollback(change, list(world.instances.values()), world.free_hosts(), REQUEST)

    assert rollback.rollback
    assert len(rollback.batches) == 2
    world.run(rollback, {"a", "b", "c"}, 6)
    assert Counter(i.version for i in world.instances.values()) == {"v1": 6}
    assert world.zone_counts() == {"a": 2, "b": 2, "c": 2}


def test_a_rollback_puts_old_instances_back_on_their_hosts() -> None:
    hosts = hosts_in()
    before = instances_on(hosts, 3)
    change = a_change()
    world = rolled_out(hosts, before, change, BatchSpec(size=3), applied=1)
    change.rollback_requested("error rate doubled", T0)

    rollback = plan_rollback(change, list(world.instances.values()), world.free_hosts(), REQUEST)

    assert sorted((s.host, s.version) for s in rollback.batches[0].start) == sorted(
        (i.host, i.version) for i in before
    )
    assert all(s.instance_id.startswith(f"{change.id}-rb-") for s in rollback.batches[0].start)


def test_a_rollback_of_a_half_applied_batch_undoes_only_what_happened() -> None:
    hosts = hosts_in()
    before = instances_on(hosts, 6)
    change = a_change()
    world = rolled_out(hosts, before, change, BatchSpec(size=3), applied=0)
    assert change.rollout_plan is not None
    batch = change.rollout_plan.batches[0]
    change.start_batch(T0)
    started = batch.start[0]
    world.start(started.instance_id, started.version, started.host, started.zone, healthy=False)
    change.batch_failed("crashed", T0)

    rollback = plan_rollback(change, list(world.instances.values()), world.free_hosts(), REQUEST)

    assert [(len(b.stop_first), len(b.start), len(b.stop)) for b in rollback.batches] == [(0, 0, 1)]
    assert rollback.batches[0].stop[0].instance_id == started.instance_id


def test_a_rollback_restarts_an_old_instance_that_was_stopped_first() -> None:
    hosts = hosts_in("ab", per_zone=1, free=FULL)
    before = instances_on(hosts, 4)
    change = a_change()
    world = rolled_out(hosts, before, change, BatchSpec(size=1, max_unavailable=1), applied=0)
    assert change.rollout_plan is not None
    first = change.rollout_plan.batches[0]
    change.start_batch(T0)
    world.stop(first.stop_first[0].instance_id)
    change.batch_failed("artifact missing", T0)

    rollback = plan_rollback(change, list(world.instances.values()), world.free_hosts(), REQUEST)

    world.run(rollback, set(), 3)
    assert sorted((i.version, i.host) for i in world.instances.values()) == sorted(
        (i.version, i.host) for i in before
    )


def test_a_rollback_leaves_no_instance_on_the_bad_version_even_one_from_before() -> None:
    hosts = hosts_in()
    leftover = Instance(id="early", version="v2", host="p1-a1", zone="a")
    before = [*instances_on(hosts, 3), leftover]
    change = a_change()
    world = rolled_out(hosts, before, change, BatchSpec(size=1), applied=3)
    change.rollback_requested("bad release", T0)

    rollback = plan_rollback(change, list(world.instances.values()), world.free_hosts(), REQUEST)

    world.run(rollback, {"a", "b", "c"}, 4)
    assert Counter(i.version for i in world.instances.values()) == {"v1": 4}


def test_a_rollback_of_a_scale_out_removes_the_added_instances() -> None:
    hosts = hosts_in()
    before = instances_on(hosts, 3)
    change = a_change(ChangeKind.SCALE, replicas=6)
    world = rolled_out(hosts, before, change, BatchSpec(size=3), applied=1)
    change.rollback_requested("budget exceeded", T0)

    rollback = plan_rollback(change, list(world.instances.values()), world.free_hosts(), REQUEST)

    world.run(rollback, {"a", "b", "c"}, 3)
    assert set(world.instances) == {i.id for i in before}


def test_a_rollback_of_a_scale_in_brings_the_instances_back_in_their_zones() -> None:
    hosts = hosts_in()
    before = instances_on(hosts, 6)
    change = a_change(ChangeKind.SCALE, replicas=2)
    world = rolled_out(hosts, before, change, BatchSpec(size=2), applied=2)
    change.rollback_requested("latency rose", T0)

    rollback = plan_rollback(change, list(world.instances.values()), world.free_hosts(), REQUEST)

    world.run(rollback, set(), 2)
    assert world.zone_counts() == {"a": 2, "b": 2, "c": 2}


def test_a_rollback_of_a_migration_moves_instances_back() -> None:
    hosts = hosts_in()
    before = instances_on(hosts, 6)
    change = a_change(ChangeKind.MIGRATE, placement=Placement(zones=frozenset({"b", "c"})))
    world = rolled_out(hosts, before, change, BatchSpec(size=1), applied=2)
    change.rollback_requested("zone a is fine after all", T0)

    rollback = plan_rollback(change, list(world.instances.values()), world.free_hosts(), REQUEST)

    world.run(rollback, {"b", "c"}, 6)
    assert world.zone_counts() == {"a": 2, "b": 2, "c": 2}


def test_a_change_without_a_rollout_cannot_plan_a_rollback() -> None:
    with pytest.raises(PlanningError, match="no rollout"):
        plan_rollback(a_change(), [], hosts_in(), REQUEST)


def test_random_rollbacks_restore_every_zone_and_version_leaving_none_on_the_bad_one() -> None:
    rng = random.Random(4)
    checked = 0
    for _ in range(400):
        hosts, instances = random_fleet(rng)
        instances = [i for i in instances if i.version == "v1"]
        change, _ = random_change(rng, instances)
        spec = random_spec(rng)
        try:
            plan = plan_change(change, instances, hosts, REQUEST, spec)
        except PlanningError:
            continue
        if not plan.batches:
            continue
        applied = rng.randrange(len(plan.batches))
        world = rolled_out(hosts, instances, change, spec, applied)
        failing = plan.batches[applied]
        change.start_batch(T0)
        for stop in failing.stop_first:
            world.stop(stop.instance_id)
        for start in failing.start[: rng.randint(0, len(failing.start))]:
            healthy = rng.random() < 0.5
            world.start(start.instance_id, start.version, start.host, start.zone, healthy)
        change.batch_failed("health check timed out", T0)
        keep = set(world.zone_counts()) & {i.zone for i in instances}
        floor = min(min(world.available, len(instances)) - spec.max_unavailable, plan.min_running)

        rollback = plan_rollback(
            change, list(world.instances.values()), world.free_hosts(), REQUEST
        )

        world.run(rollback, keep, floor)
        after = sorted((i.zone, i.version) for i in world.instances.values())
        assert after == sorted((i.zone, i.version) for i in instances)
        checked += 1
    assert checked > 150


def test_a_rollback_with_no_room_stops_the_bad_instance_first_even_a_zones_last() -> None:
    hosts = hosts_in("a", per_zone=1, free=FULL)
    sick = Instance(id="a1", version="v1", host="p1-a1", zone="a", status=InstanceStatus.UNHEALTHY)
    change = a_change()
    world = rolled_out(hosts, [sick], change, BatchSpec(size=1), applied=1)
    change.rollback_requested("v2 is slow", T0)

    rollback = plan_rollback(change, list(world.instances.values()), world.free_hosts(), REQUEST)

    [batch] = rollback.batches
    assert [stop.version for stop in batch.stop_first] == ["v2"]
    assert [(start.version, start.host) for start in batch.start] == [("v1", "p1-a1")]
