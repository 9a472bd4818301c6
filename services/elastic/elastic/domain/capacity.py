"""Capacity: free instance slots per zone from hosts' free CPU and memory, quotas, zone spread."""

from collections.abc import Collection, Iterable, Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from ooda.bounds import Positive32

CapacityRule = Literal["capacity", "spread"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InstanceRequest(_Frozen):
    """CPU and memory one instance of an application reserves on its host."""

    cpu_millis: Positive32
    memory_mib: Positive32


class HostCapacity(_Frozen):
    """What is still free on one host (from the CMDB's hosts minus what runs on them)."""

    host_id: str
    zone: str
    pool: str
    free_cpu_millis: Annotated[int, Field(ge=0)]
    free_memory_mib: Annotated[int, Field(ge=0)]
    schedulable: bool = True

    def slots(self, request: InstanceRequest) -> int:
        """How many more instances of this size fit on the host."""
        if not self.schedulable:
            return 0
        return min(
            self.free_cpu_millis // request.cpu_millis, self.free_memory_mib // request.memory_mib
        )


class Quota(_Frozen):
    """The CPU and memory a team may still claim in one zone or pool."""

    scope: Literal["zone", "pool"]
    name: str
    cpu_millis: Annotated[int, Field(ge=0)]
    memory_mib: Annotated[int, Field(ge=0)]

    def slots(self, request: InstanceRequest) -> int:
        """How many more instances of this size the quota allows."""
        return min(self.cpu_millis // request.cpu_millis, self.memory_mib // request.memory_mib)


def zone_slots(
    hosts: Iterable[HostCapacity],
    request: InstanceRequest,
    quotas: Iterable[Quota] = (),
    pools: Collection[str] | None = None,
) -> dict[str, int]:
    """Extra instances placeable per zone with schedulable hosts, within pool and zone quotas.

    A pool quota spanning zones is handed out zone by zone in name order.
    """
    by_zone_pool: dict[tuple[str, str], int] = {}
    for host in hosts:
        if host.schedulable and (pools is None or host.pool in pools):
            key = (host.zone, host.pool)
            by_zone_pool[key] = by_zone_pool.get(key, 0) + host.slots(request)
    pool_left = {q.name: q.slots(request) for q in quotas if q.scope == "pool"}
    zone_caps = {q.name: q.slots(request) for q in quotas if q.scope == "zone"}
    slots: dict[str, int] = {}
    for (zone, pool), free in sorted(by_zone_pool.items()):
        granted = min(free, pool_left.get(pool, free))
        if pool in pool_left:
            pool_left[pool] -= granted
        slots[zone] = slots.get(zone, 0) + granted
    return {zone: min(free, zone_caps.get(zone, free)) for zone, free in slots.items()}


class SpreadRule(_Frozen):
    """How evenly an application's instances must spread over zones."""

    max_skew: Positive32 | None = 1
    min_zones: Positive32 = 1


class Placement(_Frozen):
    """Instances per zone after placing a target, and what stopped it short, if anything."""

    counts: dict[str, int]
    stopped_by: CapacityRule | None = None
    reason: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        """All instances placed."""
        return sum(self.counts.values())


def place(
    current: Mapping[str, int], target: int, slots: Mapping[str, int], spread: SpreadRule
) -> Placement:
    """Spread a replica target over the zones in `slots`, starting from the current counts."""
    # Scaling down empties zones that are no longer eligible first, then the fullest ones.
    counts = {zone: current.get(zone, 0) for zone in sorted(current.keys() | slots.keys())}
    zones = ", ".join(sorted(slots)) or "none eligible"
    total = sum(counts.values())
    while total > target:
        zone = min((z for z in counts if counts[z]), key=lambda z: (z in slots, -counts[z], z))
        counts[zone] -= 1
        total -= 1
    # Scaling up fills the emptiest zone with room; like Kubernetes topology spread, a full
    # zone still counts toward the skew, so it can stop the others from growing further.
    added = dict.fromkeys(slots, 0)
    while total < target:
        open_zones = [z for z in slots if added[z] < slots[z]]
        if not open_zones:
            return _placement(
                counts, spread, "capacity", f"only {total} instances fit (zones: {zones})"
            )
        zone = min(open_zones, key=lambda z: (counts[z], z))
        lowest = min(counts[z] for z in slots)
        if spread.max_skew is not None and counts[zone] + 1 - lowest > spread.max_skew:
            full = ", ".join(z for z in sorted(slots) if counts[z] == lowest)
            return _placement(
                counts,
                spread,
                "spread",
                f"zone {full} is full at {lowest} and max skew is {spread.max_skew}",
            )
        counts[zone] += 1
        added[zone] += 1
        total += 1
    return _placement(counts, spread)


def _placement(
    counts: Mapping[str, int],
    spread: SpreadRule,
    stopped_by: CapacityRule | None = None,
    reason: str | None = None,
) -> Placement:
    used = {zone: count for zone, count in counts.items() if count}
    notes: tuple[str, ...] = ()
    if len(used) < min(spread.min_zones, sum(used.values())):
        notes = (f"runs in {len(used)} zones, spread rule wants {spread.min_zones}",)
    return Placement(counts=used, stopped_by=stopped_by, reason=reason, notes=notes)
