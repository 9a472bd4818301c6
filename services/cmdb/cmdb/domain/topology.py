"""Topology: what depends on an application, what runs on a host, the blast radius of a failure."""

import math
from collections import deque
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict

from cmdb.domain.items import ApplicationSpec, Host, Instance, Relation

HIGH_AVAILABILITY = 0.999
"""Availability targets at or above this need instances in at least two zones."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def dependents(app_id: str, relations: Iterable[Relation]) -> dict[str, int]:
    """Every application that depends on `app_id` directly or transitively, with its distance."""
    depended_on_by: dict[str, set[str]] = {}
    for relation in relations:
        if relation.type == "depends_on":
            depended_on_by.setdefault(relation.target.id, set()).add(relation.source.id)
    distance = {app_id: 0}
    queue = deque([app_id])
    while queue:
        current = queue.popleft()
        for dependent in sorted(depended_on_by.get(current, ())):
            if dependent not in distance:
                distance[dependent] = distance[current] + 1
                queue.append(dependent)
    del distance[app_id]
    return distance


def instances_on_host(host_id: str, instances: Iterable[Instance]) -> list[Instance]:
    """What runs on a host, ordered by application and instance id."""
    return sorted((i for i in instances if i.host_id == host_id), key=lambda i: (i.app_id, i.id))


class FailureScope(_Frozen):
    """The failure domain being lost: a whole zone or a whole pool."""

    kind: Literal["zone", "pool"]
    id: str

    def contains(self, host: Host) -> bool:
        """Whether the host is inside this failure domain."""
        return (host.zone_id if self.kind == "zone" else host.pool_id) == self.id


class AppImpact(_Frozen):
    """What losing the failure domain does to one application."""

    app_id: str
    instances_before: int
    instances_lost: int
    instances_left: int
    zones_left: int
    cpu_millis_left: int
    memory_mib_left: int
    min_replicas: int
    min_replicas_hold: bool
    load_floor: int
    slo_holds: bool
    problems: tuple[str, ...]


class BlastRadius(_Frozen):
    """The impact of losing a zone or pool: hosts and capacity lost, and each application hit."""

    scope: FailureScope
    hosts_lost: tuple[str, ...]
    cpu_millis_lost: int
    cpu_millis_left: int
    memory_mib_lost: int
    memory_mib_left: int
    applications: tuple[AppImpact, ...]


class Placement(NamedTuple):
    """Where one live instance runs: all the blast radius needs to know of it."""

    app_id: str
    host_id: str
    zone_id: str


def _impact(
    app_id: str,
    instances_before: int,
    instances_lost: int,
    zones_left: int,
    spec: ApplicationSpec | None,
) -> AppImpact:
    left = instances_before - instances_lost
    minimum = spec.replicas.min if spec else 0
    # Instances are sized to run at the target utilisation, so the survivors must carry
    # before * target of work at full load; fewer than that and latency breaks the SLO.
    load_floor = math.ceil(instances_before * spec.scaling.target_utilisation) if spec else 0
    problems = []
    if left < minimum:
        problems.append(f"{left} instances left, below min replicas {minimum}")
    if left < load_floor:
        problems.append(f"{left} instances left cannot carry the load of {load_floor}")
    if spec and spec.slo.availability >= HIGH_AVAILABILITY and zones_left < 2:
        problems.append(
            f"availability target {spec.slo.availability:.2%} needs two zones, {zones_left} left"
        )
    resources = spec.resources if spec else None
    return AppImpact(
        app_id=app_id,
        instances_before=instances_before,
        instances_lost=instances_lost,
        instances_left=left,
        zones_left=zones_left,
        cpu_millis_left=left * resources.cpu_millis if resources else 0,
        memory_mib_left=left * resources.memory_mib if resources else 0,
        min_replicas=minimum,
        min_replicas_hold=left >= minimum,
        load_floor=load_floor,
        slo_holds=not problems,
        problems=tuple(problems),
    )


def app_impacts(
    scope: FailureScope,
    lost_hosts: AbstractSet[str],
    live: Iterable[Placement],
    specs: Mapping[str, ApplicationSpec],
) -> tuple[AppImpact, ...]:
    """Per application hit (by app id): what losing `lost_hosts` (and the zone) does to it.

    `live` are the live instances; those of applications that lose none may be left out.
    """
    before: dict[str, int] = {}
    lost: dict[str, int] = {}
    zones_left: dict[str, set[str]] = {}
    for app_id, host_id, zone_id in live:
        before[app_id] = before.get(app_id, 0) + 1
        if host_id in lost_hosts or (scope.kind == "zone" and zone_id == scope.id):
            lost[app_id] = lost.get(app_id, 0) + 1
        else:
            zones_left.setdefault(app_id, set()).add(zone_id)
    return tuple(
        _impact(
            app_id, before[app_id], lost[app_id], len(zones_left.get(app_id, ())), specs.get(app_id)
        )
        for app_id in sorted(lost)
    )


def blast_radius(
    scope: FailureScope,
    hosts: Iterable[Host],
    instances: Iterable[Instance],
    specs: Mapping[str, ApplicationSpec],
) -> BlastRadius:
    """Per application: live instances lost and left if the zone or pool fails; bounds broken."""
    all_hosts = list(hosts)
    lost_hosts = {h.id for h in all_hosts if scope.contains(h)}
    surviving = [h for h in all_hosts if h.id not in lost_hosts and h.status == "up"]
    live = [Placement(i.app_id, i.host_id, i.zone_id) for i in instances if i.is_live]
    return BlastRadius(
        scope=scope,
        hosts_lost=tuple(sorted(lost_hosts)),
        cpu_millis_lost=sum(h.cpu_millis for h in all_hosts if h.id in lost_hosts),
        cpu_millis_left=sum(h.cpu_millis for h in surviving),
        memory_mib_lost=sum(h.memory_mib for h in all_hosts if h.id in lost_hosts),
        memory_mib_left=sum(h.memory_mib for h in surviving),
        applications=app_impacts(scope, lost_hosts, live, specs),
    )
