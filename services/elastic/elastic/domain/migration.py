"""Batch migration: empty a zone or pool batch by batch while every application stays available."""

from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from elastic.domain.capacity import HostCapacity, InstanceRequest
from ooda.bounds import NoNul


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Scope(_Frozen):
    """A zone or a pool."""

    kind: Literal["zone", "pool"]
    name: Annotated[str, NoNul, Field(min_length=1, max_length=128)]

    def contains(self, zone: str, pool: str) -> bool:
        """Whether a host in this zone and pool lies inside the scope."""
        return (zone if self.kind == "zone" else pool) == self.name


class PlacedInstance(_Frozen):
    """An instance where it runs now, and whether it is serving."""

    instance_id: str
    app_id: str
    host_id: str
    zone: str
    pool: str
    ready: bool = True


class AppRequirement(_Frozen):
    """What an application needs while it moves: its instance size and how many must stay ready."""

    app_id: str
    request: InstanceRequest
    min_available: Annotated[int, Field(ge=0)]


class Move(_Frozen):
    """Replace one instance with a new one on another host."""

    instance_id: str
    app_id: str
    from_host: str
    from_zone: str
    to_host: str
    to_zone: str


class Batch(_Frozen):
    """Moves carried out together; the next batch starts once these are healthy."""

    number: PositiveInt
    moves: tuple[Move, ...]


class Unmoved(_Frozen):
    """An instance the plan cannot move, and why."""

    instance_id: str
    app_id: str
    reason: str


class MigrationPlan(_Frozen):
    """Batches that empty the source scope, and what could not be moved."""

    source: Scope
    batches: tuple[Batch, ...]
    unmoved: tuple[Unmoved, ...]


class _Hosts:
    """Free capacity on the target hosts, reserved as instances are placed."""

    def __init__(self, hosts: Iterable[HostCapacity]) -> None:
        self.free = {h.host_id: h for h in hosts if h.schedulable}

    def choose(self, request: InstanceRequest, zone_load: Mapping[str, int]) -> HostCapacity | None:
        fitting = [h for h in self.free.values() if h.slots(request) > 0]
        if not fitting:
            return None
        # Spread the application: its least-used zone first, then the emptiest host there.
        return min(fitting, key=lambda h: (zone_load.get(h.zone, 0), -h.free_cpu_millis, h.host_id))

    def reserve(self, host: HostCapacity, request: InstanceRequest) -> None:
        self.free[host.host_id] = host.model_copy(
            update={
                "free_cpu_millis": host.free_cpu_millis - request.cpu_millis,
                "free_memory_mib": host.free_memory_mib - request.memory_mib,
            }
        )


def plan_migration(
    source: Scope,
    instances: Sequence[PlacedInstance],
    hosts: Iterable[HostCapacity],
    apps: Mapping[str, AppRequirement],
    max_batch_size: int,
    target: Scope | None = None,
) -> MigrationPlan:
    """Batches moving all instances out of `source` (into `target` if given) within capacity."""
    # `instances` lists every instance of the applications concerned, inside and outside the
    # source, so that readiness and zone spread are counted over the whole application.
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
    unknown = sorted({i.app_id for i in instances} - apps.keys())
    if unknown:
        raise ValueError(f"no requirements for applications {', '.join(unknown)}")
    free = _Hosts(
        h
        for h in hosts
        if not source.contains(h.zone, h.pool)
        and (target is None or target.contains(h.zone, h.pool))
    )
    ready = {app: 0 for app in apps}
    zone_load: dict[str, dict[str, int]] = {app: {} for app in apps}
    for instance in instances:
        ready[instance.app_id] += instance.ready
        if not source.contains(instance.zone, instance.pool):
            load = zone_load[instance.app_id]
            load[instance.zone] = load.get(instance.zone, 0) + 1
    # Instances that are not serving cost no availability to move, so they go first.
    pending = sorted(
        (i for i in instances if source.contains(i.zone, i.pool)),
        key=lambda i: (i.ready, i.app_id, i.instance_id),
    )
    batches: list[Batch] = []
    unmoved: list[Unmoved] = []
    while pending:
        moves: list[Move] = []
        down: dict[str, int] = {}
        deferred: list[PlacedInstance] = []
        for instance in pending:
            app = apps[instance.app_id]
            allowance = ready[app.app_id] - app.min_available
            if instance.ready and allowance <= 0:
                unmoved.append(
                    Unmoved(
                        instance_id=instance.instance_id,
                        app_id=app.app_id,
                        reason=f"moving it would leave fewer than {app.min_available} ready "
                        f"instances of {app.app_id}; scale up first",
                    )
                )
                continue
            if len(moves) >= max_batch_size or (
                instance.ready and down.get(app.app_id, 0) >= allowance
            ):
                deferred.append(instance)
                continue
            host = free.choose(app.request, zone_load[app.app_id])
            if host is None:
                unmoved.append(
                    Unmoved(
                        instance_id=instance.instance_id,
                        app_id=app.app_id,
                        reason=f"no host outside {source.kind} {source.name} has "
                        f"{app.request.cpu_millis}m CPU and {app.request.memory_mib}Mi free",
                    )
                )
                continue
            free.reserve(host, app.request)
            zone_load[app.app_id][host.zone] = zone_load[app.app_id].get(host.zone, 0) + 1
            down[app.app_id] = down.get(app.app_id, 0) + instance.ready
            moves.append(
                Move(
                    instance_id=instance.instance_id,
                    app_id=app.app_id,
                    from_host=instance.host_id,
                    from_zone=instance.zone,
                    to_host=host.host_id,
                    to_zone=host.zone,
                )
            )
        if moves:
            batches.append(Batch(number=len(batches) + 1, moves=tuple(moves)))
        pending = deferred
    return MigrationPlan(source=source, batches=tuple(batches), unmoved=tuple(unmoved))
