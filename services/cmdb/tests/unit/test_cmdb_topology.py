"""Topology: dependents, what runs on a host, and the blast radius of losing a zone or pool."""

from datetime import UTC, datetime

import pytest

from cmdb.domain import (
    ApplicationSpec,
    FailureScope,
    Host,
    Instance,
    ItemRef,
    Relation,
    ReplicaBounds,
    ScalingHints,
    SloTargets,
    blast_radius,
    dependents,
    instances_on_host,
)

pytestmark = pytest.mark.unit

T0 = datetime(2025, 3, 1, tzinfo=UTC)


def host(host_id: str, zone: str, pool: str = "general", status: str = "up") -> Host:
    return Host.model_validate(
        {
            "id": host_id,
            "zone_id": zone,
            "pool_id": pool,
            "address": host_id,
            "cpu_millis": 4000,
            "memory_mib": 8192,
            "status": status,
        }
    )


HOSTS = [
    host("h-a1", "zone-a"),
    host("h-a2", "zone-a"),
    host("h-b1", "zone-b"),
    host("h-b2", "zone-b", status="maintenance"),
    host("h-c1", "zone-c", pool="gpu"),
]
ZONE_OF = {h.id: h.zone_id for h in HOSTS}


def instance(app: str, number: int, host_id: str, status: str = "ready") -> Instance:
    return Instance.model_validate(
        {
            "id": f"{app}-{number}",
            "app_id": app,
            "version": "1.0",
            "host_id": host_id,
            "zone_id": ZONE_OF[host_id],
            "endpoint": f"{host_id}:{8000 + number}",
            "status": status,
            "started_at": T0,
        }
    )


INSTANCES = [
    *(
        instance("web", n, h)
        for n, h in enumerate(["h-a1", "h-a1", "h-a2", "h-b1", "h-b1", "h-c1"])
    ),
    instance("web", 9, "h-a1", status="failed"),
    *(instance("api", n, h) for n, h in enumerate(["h-a1", "h-a2", "h-b1"])),
    instance("db", 0, "h-a1"),
    instance("db", 1, "h-b1"),
    instance("batch", 0, "h-c1"),
    instance("legacy", 0, "h-a2"),
]


def spec(app: str, low: int, target: float, availability: float) -> ApplicationSpec:
    return ApplicationSpec(
        id=app,
        revision=1,
        artifact=app,
        version="1.0",
        replicas=ReplicaBounds(min=low, desired=low, max=20),
        slo=SloTargets(availability=availability),
        scaling=ScalingHints(target_utilisation=target),
    )


SPECS = {
    "web": spec("web", 3, 0.5, 0.999),
    "api": spec("api", 2, 0.8, 0.99),
    "db": spec("db", 1, 0.5, 0.9999),
    "batch": spec("batch", 0, 0.5, 0.9),
}


def test_losing_a_zone_reports_per_application_instances_lost_and_left() -> None:
    radius = blast_radius(FailureScope(kind="zone", id="zone-a"), HOSTS, INSTANCES, SPECS)

    assert radius.hosts_lost == ("h-a1", "h-a2")
    assert [
        (a.app_id, a.instances_before, a.instances_lost, a.instances_left, a.zones_left)
        for a in radius.applications
    ] == [
        ("api", 3, 2, 1, 1),
        ("db", 2, 1, 1, 1),
        ("legacy", 1, 1, 0, 0),
        ("web", 6, 3, 3, 2),
    ]


def test_losing_a_zone_reports_the_host_capacity_lost_and_left_on_hosts_that_are_up() -> None:
    radius = blast_radius(FailureScope(kind="zone", id="zone-a"), HOSTS, INSTANCES, SPECS)

    assert (radius.cpu_millis_lost, radius.cpu_millis_left) == (8000, 8000)
    assert (radius.memory_mib_lost, radius.memory_mib_left) == (16384, 16384)


def test_an_application_keeping_its_minimum_and_load_floor_in_two_zones_still_holds() -> None:
    radius = blast_radius(FailureScope(kind="zone", id="zone-a"), HOSTS, INSTANCES, SPECS)
    web = next(a for a in radius.applications if a.app_id == "web")

    assert (web.min_replicas, web.min_replicas_hold, web.load_floor, web.slo_holds) == (
        3,
        True,
        3,
        True,
    )
    assert (web.cpu_millis_left, web.memory_mib_left) == (1500, 1536)
    assert web.problems == ()


def test_an_application_falling_below_its_minimum_and_load_floor_breaks_its_bounds() -> None:
    radius = blast_radius(FailureScope(kind="zone", id="zone-a"), HOSTS, INSTANCES, SPECS)
    api = next(a for a in radius.applications if a.app_id == "api")

    assert (api.min_replicas_hold, api.load_floor, api.slo_holds) == (False, 3, False)
    assert api.problems == (
        "1 instances left, below min replicas 2",
        "1 instances left cannot carry the load of 3",
    )


def test_a_high_availability_application_left_in_one_zone_breaks_its_slo() -> None:
    radius = blast_radius(FailureScope(kind="zone", id="zone-a"), HOSTS, INSTANCES, SPECS)
    db = next(a for a in radius.applications if a.app_id == "db")

    assert db.min_replicas_hold is True
    assert db.slo_holds is False
    assert db.problems == ("availability target 99.99% needs two zones, 1 left",)


def test_an_application_without_a_spec_is_reported_without_bounds() -> None:
    radius = blast_radius(FailureScope(kind="zone", id="zone-a"), HOSTS, INSTANCES, SPECS)
    legacy = next(a for a in radius.applications if a.app_id == "legacy")

    assert (legacy.min_replicas, legacy.load_floor, legacy.slo_holds) == (0, 0, True)


def test_losing_a_pool_hits_only_the_applications_with_instances_in_it() -> None:
    radius = blast_radius(FailureScope(kind="pool", id="gpu"), HOSTS, INSTANCES, SPECS)

    assert radius.hosts_lost == ("h-c1",)
    assert [(a.app_id, a.instances_lost, a.instances_left) for a in radius.applications] == [
        ("batch", 1, 0),
        ("web", 1, 5),
    ]


def test_what_runs_on_a_host_is_listed_by_application() -> None:
    assert [i.id for i in instances_on_host("h-a1", INSTANCES)] == [
        "api-0",
        "db-0",
        "web-0",
        "web-1",
        "web-9",
    ]


def depends(source: str, target: str) -> Relation:
    return Relation.between(
        "depends_on", ItemRef(kind="application", id=source), ItemRef(kind="application", id=target)
    )


def test_dependents_are_found_transitively_with_their_distance() -> None:
    relations = [depends("web", "api"), depends("api", "db"), depends("worker", "db")]

    assert dependents("db", relations) == {"api": 1, "worker": 1, "web": 2}
    assert dependents("web", relations) == {}


def test_dependents_are_found_safely_through_a_cycle() -> None:
    relations = [depends("web", "api"), depends("api", "db"), depends("db", "web")]

    assert dependents("db", relations) == {"api": 1, "web": 2}


def test_relations_other_than_depends_on_are_ignored_by_dependents() -> None:
    runs_on = Relation.between(
        "runs_on", ItemRef(kind="instance", id="web-0"), ItemRef(kind="host", id="h-a1")
    )

    assert dependents("h-a1", [runs_on]) == {}
