"""Planning: cut a change into batches of start and stop actions that fit the hosts and zones.

Every batch runs surge-first: new instances start (and turn healthy) before the instances they
replace stop, so serving capacity does not drop. Only where a zone has no room for a new instance
may a replacement stop its old instance first, and only while the application keeps
`min(running, desired) - max_unavailable` running instances and the zone keeps at least one.
A rollback undoes the applied batches newest first, so it needs only the room they freed.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import count

from pipeline.domain.change import Change
from pipeline.domain.errors import InsufficientCapacity, PlanningError, Shortage
from pipeline.domain.model import (
    Batch,
    BatchSpec,
    ChangeKind,
    Host,
    Instance,
    InstanceStatus,
    Placement,
    Plan,
    Resources,
    StartInstance,
    StopInstance,
)


@dataclass(frozen=True)
class _Unit:
    """One unit of work: stop `stop`, start `version` in `zone`, or both (a replacement)."""

    stop: Instance | None
    version: str | None = None
    zone: str = ""
    prefer_host: str | None = None


class _Capacity:
    """Free room per host and running instances per zone, updated as each batch is applied."""

    def __init__(self, hosts: Iterable[Host], request: Resources, live: Iterable[Instance]) -> None:
        self.request = request
        self.cpu = {host.id: host.free.millicpu for host in hosts}
        self.memory = {host.id: host.free.memory_mb for host in hosts}
        self.running = Counter(i.zone for i in live if i.status is InstanceStatus.RUNNING)

    @property
    def available(self) -> int:
        return sum(self.running.values())

    def slots(self, host: str) -> int:
        cpu, memory = self.request.millicpu, self.request.memory_mb
        by_cpu = self.cpu[host] // cpu if cpu else sys.maxsize
        by_memory = self.memory[host] // memory if memory else sys.maxsize
        return max(0, min(by_cpu, by_memory))

    def pick(self, hosts: Sequence[str]) -> str | None:
        best, room = None, 0
        for host in hosts:
            slots = self.slots(host)
            if slots > room:
                best, room = host, slots
        return best

    def may_stop_first(self, instance: Instance, hosts: Sequence[str], floor: int | None) -> bool:
        """Whether `instance` may stop before its replacement starts; no floor means always."""
        if instance.host not in hosts:
            return False
        if instance.status is not InstanceStatus.RUNNING or floor is None:
            return True
        return self.available - 1 >= floor and self.running[instance.zone] > 1

    def take(self, host: str) -> None:
        self.cpu[host] -= self.request.millicpu
        self.memory[host] -= self.request.memory_mb

    def release(self, instance: Instance) -> None:
        if instance.host in self.cpu:
            self.cpu[instance.host] += self.request.millicpu
            self.memory[instance.host] += self.request.memory_mb
        if instance.status is InstanceStatus.RUNNING:
            self.running[instance.zone] -= 1

    def shortage(self, zone: str, hosts: Sequence[str], batch: int, missing: int) -> Shortage:
        return Shortage(
            zone=zone,
            batch=batch,
            instances=missing,
            cpu=self.request.millicpu * missing / 1000,
            memory_mb=self.request.memory_mb * missing,
            free_cpu=sum(self.cpu[host] for host in hosts) / 1000,
            free_memory_mb=sum(self.memory[host] for host in hosts),
        )


class _ZoneChooser:
    """Sends new instances to the zone with the fewest instances that still has room."""

    def __init__(
        self, counts: Counter[str], zones: dict[str, list[str]], capacity: _Capacity
    ) -> None:
        if not zones:
            raise PlanningError("no host lies in the allowed pools and zones")
        self.counts = counts
        self.slots = {zone: sum(capacity.slots(h) for h in hosts) for zone, hosts in zones.items()}

    def choose(self, prefer: str | None = None) -> str:
        if prefer is not None and self.slots.get(prefer, 0) > 0:
            zone = prefer
        else:
            open_zones = [zone for zone, slots in self.slots.items() if slots > 0] or list(
                self.slots
            )
            zone = min(open_zones, key=lambda z: (self.counts[z], -self.slots[z], z))
        self.counts[zone] += 1
        self.slots[zone] -= 1
        return zone


def plan_change(
    change: Change,
    instances: Sequence[Instance],
    hosts: Sequence[Host],
    request: Resources,
    spec: BatchSpec,
) -> Plan:
    """Cut a change into batches of concrete actions that fit the hosts' free capacity."""
    live = _live(instances)
    target = change.target
    eligible = [host for host in hosts if target.placement.allows(host.zone, host.pool)]
    zones = _hosts_by_zone(eligible)
    capacity = _Capacity(hosts, request, live)
    new_version = (
        target.version if change.kind in (ChangeKind.DEPLOY, ChangeKind.ROLLBACK) else None
    )
    if change.kind is ChangeKind.MIGRATE:
        units = _migrate(live, target.placement, hosts, zones, capacity)
    elif change.kind is ChangeKind.RESTART:
        units = [_Unit(i, i.version, i.zone, i.host) for i in _round_robin(live)]
    else:
        replicas = len(live) if target.replicas is None else target.replicas
        version = target.version or _most_common_version(live)
        if version is not None:
            units = _converge(live, version, replicas, new_version is not None, zones, capacity)
        elif replicas:
            raise PlanningError(f"{change.application} runs no instance to copy; give a version")
        else:
            units = []
    size = spec.batch_size(len(units))
    first = spec.canary.instances if spec.canary else size
    floor = max(0, min(capacity.available, _desired(len(live), units)) - spec.max_unavailable)
    batches = _allocate(_cut(units, first, size), capacity, zones, change.id, floor)
    previous = _most_common_version(i for i in live if i.version != new_version)
    return Plan(
        batches=batches,
        batch_size=size,
        max_unavailable=spec.max_unavailable,
        min_running=floor,
        canary=spec.canary,
        version=new_version,
        previous_version=previous if new_version is not None else None,
    )


def plan_rollback(
    change: Change,
    instances: Sequence[Instance],
    hosts: Sequence[Host],
    request: Resources,
) -> Plan:
    """Plan batches that undo what the change applied, back to the previous version and count."""
    plan = change.rollout_plan
    if plan is None:
        raise PlanningError(f"change {change.id} has no rollout to roll back")
    live = {instance.id: instance for instance in _live(instances)}
    size = plan.batch_size
    undone: set[str] = set()
    # Undoing batch by batch, newest first, walks back through states the rollout already
    # passed, so the room each undo needs is the room the batch it reverses had freed.
    # Instances the batch removed come back in a batch of their own first, so that capacity
    # is restored before any replacement has to stop an instance first.
    chunks: list[list[_Unit]] = []
    for batch in reversed(plan.batches[: change.rollout_progress.started]):
        units = _undo(batch, live, undone)
        chunks.extend(_cut([unit for unit in units if unit.stop is None], size, size))
        chunks.extend(_cut([unit for unit in units if unit.stop is not None], size, size))
    if plan.version is not None and plan.previous_version is not None:
        leftovers = [i for i in live.values() if i.version == plan.version and i.id not in undone]
        cleanup = [_Unit(i, plan.previous_version, i.zone) for i in _round_robin(leftovers)]
        chunks.extend(_cut(cleanup, size, size))
    capacity = _Capacity(hosts, request, live.values())
    # Leaving the bad version matters more than availability: where no host has room, a
    # rollback stops the instance it replaces first, whatever the floor and zone rules say.
    batches = _allocate(chunks, capacity, _hosts_by_zone(hosts), f"{change.id}-rb", None)
    return Plan(
        batches=batches,
        batch_size=size,
        max_unavailable=plan.max_unavailable,
        rollback=True,
    )


def _converge(
    live: list[Instance],
    version: str,
    replicas: int,
    replace: bool,
    zones: dict[str, list[str]],
    capacity: _Capacity,
) -> list[_Unit]:
    """Add to the emptiest zones, replace other versions, and last remove from the fullest zones.

    Removing last keeps capacity up during the rollout, and lets a rollback put the removed
    instances back first, into the room their removal freed.
    """
    by_zone: dict[str, list[Instance]] = {}
    for instance in live:
        by_zone.setdefault(instance.zone, []).append(instance)
    for members in by_zone.values():
        members.sort(
            key=lambda i: (i.status is InstanceStatus.RUNNING, i.version == version, i.id),
            reverse=True,
        )
    removals: list[_Unit] = []
    for _ in range(len(live) - replicas):
        fullest = max(by_zone, key=lambda zone: (len(by_zone[zone]), zone))
        removals.append(_Unit(by_zone[fullest].pop()))
    units: list[_Unit] = []
    if replicas > len(live):
        chooser = _ZoneChooser(Counter({z: len(m) for z, m in by_zone.items()}), zones, capacity)
        units.extend(_Unit(None, version, chooser.choose()) for _ in range(replicas - len(live)))
    if replace:
        kept = [instance for members in by_zone.values() for instance in members]
        units.extend(_Unit(i, version, i.zone) for i in _round_robin(kept) if i.version != version)
    return units + removals


def _migrate(
    live: list[Instance],
    placement: Placement,
    hosts: Sequence[Host],
    zones: dict[str, list[str]],
    capacity: _Capacity,
) -> list[_Unit]:
    """Move every instance outside the placement, staying in its zone when that zone is allowed."""
    pools = {host.id: host.pool for host in hosts}
    for instance in live:
        if placement.pools and instance.host not in pools:
            raise PlanningError(
                f"instance {instance.id} runs on host {instance.host}, which is not among the hosts"
            )
    leaving = [i for i in live if not placement.allows(i.zone, pools.get(i.host))]
    if not leaving:
        return []
    staying = Counter(i.zone for i in live if placement.allows(i.zone, pools.get(i.host)))
    chooser = _ZoneChooser(staying, zones, capacity)
    return [_Unit(i, i.version, chooser.choose(prefer=i.zone)) for i in _round_robin(leaving)]


def _undo(batch: Batch, live: dict[str, Instance], undone: set[str]) -> list[_Unit]:
    """The units that reverse whatever part of a batch took effect."""
    stopped = {action.instance_id: action for action in (*batch.stop_first, *batch.stop)}
    units: list[_Unit] = []
    for start in batch.start:
        new = live.get(start.instance_id)
        old = stopped.pop(start.replaces, None) if start.replaces else None
        if new is not None:
            undone.add(new.id)
        if old is not None and old.instance_id not in live:
            units.append(_Unit(new, old.version, old.zone, old.host))
        elif new is not None:
            units.append(_Unit(new))
    units.extend(
        _Unit(None, old.version, old.zone, old.host)
        for old in stopped.values()
        if old.instance_id not in live
    )
    return units


def _allocate(
    chunks: list[list[_Unit]],
    capacity: _Capacity,
    zones: dict[str, list[str]],
    id_prefix: str,
    floor: int | None,
) -> tuple[Batch, ...]:
    """Place each batch's new instances on hosts, applying batches in turn to free capacity."""
    numbers = count(1)
    return tuple(
        _allocate_batch(
            number, chunk, capacity, zones, floor, lambda: f"{id_prefix}-{next(numbers)}"
        )
        for number, chunk in enumerate(chunks, start=1)
    )


def _allocate_batch(
    number: int,
    chunk: list[_Unit],
    capacity: _Capacity,
    zones: dict[str, list[str]],
    floor: int | None,
    new_id: Callable[[], str],
) -> Batch:
    """Place one batch's new instances, stopping old ones first only where no host has room."""
    starting = [n for n, unit in enumerate(chunk) if unit.version is not None]
    # Additions cannot fall back to stopping an instance first, so they choose first; and
    # preferred hosts (an instance's own, or the one a rollback returns to) go before the rest.
    order = sorted(starting, key=lambda n: chunk[n].stop is not None)
    host_of: dict[int, str] = {}
    for n in order:
        prefer = chunk[n].prefer_host
        if prefer in zones.get(chunk[n].zone, []) and capacity.slots(prefer):
            capacity.take(prefer)
            host_of[n] = prefer
    stopped_first: dict[int, Instance] = {}
    missing: Counter[str] = Counter()
    for n in order:
        unit, hosts = chunk[n], zones.get(chunk[n].zone, [])
        host = host_of.get(n) or capacity.pick(hosts)
        old = unit.stop
        if host is None and old and capacity.may_stop_first(old, hosts, floor):
            capacity.release(old)
            stopped_first[n] = old
            host = old.host
        if host is None:
            missing[unit.zone] += 1
        elif n not in host_of:
            capacity.take(host)
            host_of[n] = host
    if missing:
        raise InsufficientCapacity(
            [capacity.shortage(z, zones.get(z, []), number, n) for z, n in sorted(missing.items())]
        )
    start: list[StartInstance] = []
    for n in starting:
        unit = chunk[n]
        assert unit.version is not None
        replaces = unit.stop.id if unit.stop else None
        start.append(
            StartInstance(
                instance_id=new_id(),
                version=unit.version,
                host=host_of[n],
                zone=unit.zone,
                replaces=replaces,
            )
        )
        capacity.running[unit.zone] += 1
    stop = [unit.stop for n, unit in enumerate(chunk) if unit.stop and n not in stopped_first]
    for instance in stop:
        capacity.release(instance)
    return Batch(
        number=number,
        stop_first=tuple(_stop(stopped_first[n]) for n in sorted(stopped_first)),
        start=tuple(start),
        stop=tuple(_stop(instance) for instance in stop),
    )


def _stop(instance: Instance) -> StopInstance:
    return StopInstance(
        instance_id=instance.id, version=instance.version, host=instance.host, zone=instance.zone
    )


def _live(instances: Iterable[Instance]) -> list[Instance]:
    return [i for i in instances if i.status is not InstanceStatus.STOPPED]


def _desired(live: int, units: Iterable[_Unit]) -> int:
    """The instance count once every unit is applied."""
    return live + sum((u.version is not None) - (u.stop is not None) for u in units)


def _hosts_by_zone(hosts: Iterable[Host]) -> dict[str, list[str]]:
    zones: dict[str, list[str]] = {}
    for host in sorted(hosts, key=lambda h: h.id):
        zones.setdefault(host.zone, []).append(host.id)
    return zones


def _most_common_version(instances: Iterable[Instance]) -> str | None:
    counts = Counter(instance.version for instance in instances)
    if not counts:
        return None
    return min(counts, key=lambda version: (-counts[version], version))


def _round_robin(instances: Iterable[Instance]) -> list[Instance]:
    """Order instances so that consecutive ones come from different zones in turn."""
    by_zone: dict[str, list[Instance]] = {}
    for instance in sorted(instances, key=lambda i: (i.zone, i.id)):
        by_zone.setdefault(instance.zone, []).append(instance)
    groups = list(by_zone.values())
    longest = max((len(group) for group in groups), default=0)
    return [group[i] for i in range(longest) for group in groups if i < len(group)]


def _cut(units: list[_Unit], first: int, size: int) -> list[list[_Unit]]:
    """Split units into a first batch of `first` and then batches of `size`."""
    chunks, position, step = [], 0, first
    while position < len(units):
        chunks.append(units[position : position + step])
        position, step = position + step, size
    return chunks
