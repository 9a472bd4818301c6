"""Inventory items (regions to instances), typed relations and per-type custom attribute schemas."""

from collections.abc import Mapping
from typing import Annotated, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    StringConstraints,
    TypeAdapter,
    model_validator,
)

from cmdb.domain.labels import Labels, name_problem
from ooda.bounds import HostPort

ItemKind = Literal[
    "region", "zone", "pool", "host", "application", "application_spec", "instance", "relation"
]
Identifier = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$", max_length=253)
]
Version = Annotated[str, StringConstraints(max_length=128)]
AttributeValue = Annotated[str, StringConstraints(max_length=1024)] | int | float | bool
HostStatus = Literal["up", "down", "maintenance", "retired"]
InstanceStatus = Literal["starting", "ready", "draining", "failed", "stopped"]
LIVE_INSTANCE_STATUSES: frozenset[InstanceStatus] = frozenset({"starting", "ready"})
Tier = Literal["critical", "high", "standard", "low"]
RelationType = Literal["depends_on", "runs_on", "belongs_to"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ItemRef(_Strict):
    """Points at one item by kind and id."""

    kind: ItemKind
    id: Identifier

    def __str__(self) -> str:
        return f"{self.kind}/{self.id}"


class _Item(_Strict):
    kind: ItemKind
    id: Identifier
    labels: Labels = {}
    attributes: dict[str, AttributeValue] = {}

    @property
    def ref(self) -> ItemRef:
        """This item's reference."""
        return ItemRef(kind=self.kind, id=self.id)


class Region(_Item):
    """A geographic region holding zones."""

    kind: Literal["region"] = "region"


class Zone(_Item):
    """A data centre (failure domain) in a region."""

    kind: Literal["zone"] = "zone"
    region_id: Identifier


class Pool(_Item):
    """A resource pool: a named group of hosts, possibly spanning zones."""

    kind: Literal["pool"] = "pool"


class Host(_Item):
    """A machine with CPU and memory capacity, in one zone and one pool."""

    kind: Literal["host"] = "host"
    zone_id: Identifier
    pool_id: Identifier
    address: Annotated[str, StringConstraints(min_length=1, max_length=253)]
    cpu_millis: PositiveInt
    memory_mib: PositiveInt
    status: HostStatus = "up"


class Application(_Item):
    """An application owned by one team."""

    kind: Literal["application"] = "application"
    owner_team: Identifier
    tier: Tier = "standard"


class ReplicaBounds(_Strict):
    """How many instances the owning team allows, and how many it wants to start with."""

    min: Annotated[int, Field(ge=0)]
    max: PositiveInt
    desired: Annotated[int, Field(ge=0)]

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.min <= self.desired <= self.max:
            raise ValueError(
                f"replicas must satisfy min <= desired <= max, got "
                f"min={self.min} desired={self.desired} max={self.max}"
            )
        return self


class HealthCheck(_Strict):
    """The HTTP path that says an instance is healthy, and how long to wait for it."""

    path: Annotated[str, StringConstraints(pattern=r"^/\S*$", max_length=1024)] = "/healthz"
    timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 2.0


class SloTargets(_Strict):
    """The service level the owning team promises."""

    availability: Annotated[float, Field(gt=0, le=1)] = 0.999
    latency_p99_ms: Annotated[float, Field(gt=0)] = 500.0


class ScalingHints(_Strict):
    """How the decision centre should size the application."""

    target_utilisation: Annotated[float, Field(gt=0, le=1)] = 0.6
    policy: Identifier = "predictive"
    scale_in_window_s: Annotated[
        float | None,
        Field(
            gt=0,
            le=86400,
            description=(
                "How long the load must stay lower before a scale-in (seconds); the policy's "
                "own default when unset (predictive 900, hpa 300)"
            ),
        ),
    ] = None
    season_s: Annotated[
        float | None,
        Field(
            ge=60,
            le=7 * 86400,
            description=(
                "How long the load's daily cycle lasts (seconds); a day when unset. Set it when "
                "the load runs on another clock (a replay sped up, a synthetic cycle)"
            ),
        ),
    ] = None


class Budget(_Strict):
    """How many replica-hours the application may use per period."""

    replica_hours: Annotated[float, Field(ge=0)]
    period: Literal["day", "week", "month"] = "month"


class ResourceRequest(_Strict):
    """CPU and memory one instance reserves on its host."""

    cpu_millis: PositiveInt = 500
    memory_mib: PositiveInt = 512


class ApplicationSpec(_Item):
    """The declared state of an application (its id is the application's id), one revision each."""

    kind: Literal["application_spec"] = "application_spec"
    revision: PositiveInt
    artifact: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    version: Annotated[
        str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$", max_length=128)
    ]
    replicas: ReplicaBounds
    resources: ResourceRequest = ResourceRequest()
    health_check: HealthCheck = HealthCheck()
    slo: SloTargets = SloTargets()
    scaling: ScalingHints = ScalingHints()
    budget: Budget | None = None


class Instance(_Item):
    """A running (or once running) copy of an application on a host."""

    kind: Literal["instance"] = "instance"
    app_id: Identifier
    version: Version
    host_id: Identifier
    zone_id: Identifier
    endpoint: HostPort
    status: InstanceStatus = "starting"
    started_at: AwareDatetime

    @property
    def is_live(self) -> bool:
        """Whether the instance is starting or ready (counts toward replicas)."""
        return self.status in LIVE_INSTANCE_STATUSES


_RELATION_ENDS: dict[RelationType, tuple[set[ItemKind], set[ItemKind]]] = {
    "depends_on": ({"application"}, {"application"}),
    "runs_on": ({"instance"}, {"host"}),
    "belongs_to": ({"host"}, {"pool", "zone"}),
}


class Relation(_Item):
    """A typed edge between two items; each type allows only certain kinds at each end."""

    kind: Literal["relation"] = "relation"
    type: RelationType
    source: ItemRef
    target: ItemRef

    @model_validator(mode="after")
    def _typed_ends(self) -> Self:
        sources, targets = _RELATION_ENDS[self.type]
        if self.source.kind not in sources or self.target.kind not in targets:
            raise ValueError(
                f"{self.type} links {'/'.join(sorted(sources))} to {'/'.join(sorted(targets))}, "
                f"not {self.source.kind} to {self.target.kind}"
            )
        return self

    @classmethod
    def between(cls, relation_type: RelationType, source: ItemRef, target: ItemRef) -> "Relation":
        """The relation with its id derived from its type and ends, so it is created once."""
        return cls(
            id=f"{relation_type}.{source.kind}.{source.id}.{target.kind}.{target.id}",
            type=relation_type,
            source=source,
            target=target,
        )


Item = Annotated[
    Region | Zone | Pool | Host | Application | ApplicationSpec | Instance | Relation,
    Field(discriminator="kind"),
]
_ITEM = TypeAdapter[Item](Item)


def parse_item(data: Mapping[str, object]) -> Item:
    """Validate a dict (e.g. a request body or a stored snapshot) into the item its `kind` names."""
    return _ITEM.validate_python(data)


def references(item: Item) -> list[ItemRef]:
    """The items this item refers to, which must exist before it does."""
    match item:
        case Zone():
            return [ItemRef(kind="region", id=item.region_id)]
        case Host():
            return [ItemRef(kind="zone", id=item.zone_id), ItemRef(kind="pool", id=item.pool_id)]
        case ApplicationSpec():
            return [ItemRef(kind="application", id=item.id)]
        case Instance():
            return [
                ItemRef(kind="application", id=item.app_id),
                ItemRef(kind="host", id=item.host_id),
                ItemRef(kind="zone", id=item.zone_id),
            ]
        case Relation():
            return [item.source, item.target]
        case _:
            return []


def implied_relations(item: Item) -> list[Relation]:
    """Relations implied by an item's own fields: host in zone and pool, instance on host."""
    match item:
        case Host():
            return [Relation.between("belongs_to", item.ref, ref) for ref in references(item)]
        case Instance():
            return [Relation.between("runs_on", item.ref, ItemRef(kind="host", id=item.host_id))]
        case _:
            return []


class AttributeSpec(_Strict):
    """What one custom attribute must look like."""

    type: Literal["string", "integer", "number", "boolean"]
    required: bool = False
    enum: tuple[AttributeValue, ...] | None = None


class AttributeSchema(_Strict):
    """The custom attributes an item type accepts; any other attribute is refused."""

    attributes: dict[str, AttributeSpec] = {}

    @model_validator(mode="after")
    def _names_are_label_names(self) -> Self:
        problems = [p for name in self.attributes if (p := name_problem(name, "attribute"))]
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Problem(_Strict):
    """One bad field: where it is and what is wrong."""

    path: tuple[str | int, ...]
    message: str


def _type_matches(expected: str, value: AttributeValue) -> bool:
    match expected:
        case "string":
            return isinstance(value, str)
        case "boolean":
            return isinstance(value, bool)
        case "integer":
            return isinstance(value, int) and not isinstance(value, bool)
        case _:
            return isinstance(value, int | float) and not isinstance(value, bool)


def attribute_problems(item: Item, schemas: Mapping[str, AttributeSchema]) -> list[Problem]:
    """Every way an item's custom attributes break its type's schema (no schema: no attributes)."""
    schema = schemas.get(item.kind, AttributeSchema())
    problems = []
    for name, value in sorted(item.attributes.items()):
        path = ("attributes", name)
        spec = schema.attributes.get(name)
        if spec is None:
            problems.append(Problem(path=path, message=f"unknown attribute for {item.kind}"))
        elif not _type_matches(spec.type, value):
            problems.append(
                Problem(path=path, message=f"must be of type {spec.type}, got {value!r}")
            )
        elif spec.enum is not None and value not in spec.enum:
            allowed = ", ".join(repr(v) for v in spec.enum)
            problems.append(Problem(path=path, message=f"must be one of {allowed}, got {value!r}"))
    for name, spec in sorted(schema.attributes.items()):
        if spec.required and name not in item.attributes:
            problems.append(Problem(path=("attributes", name), message="required"))
    return problems
