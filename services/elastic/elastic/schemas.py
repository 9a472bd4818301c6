"""Request and response models of the elastic HTTP API."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from elastic.domain import InstanceRequest, MigrationPlan, Period, Scope, SpreadRule, TeamBudget
from ooda.bounds import Count32, Count64, Duration, Finite, NoNul, Positive32

Name = Annotated[
    str, Field(min_length=1, max_length=128, pattern=r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$")
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PolicyIn(_In):
    """An application's scaling policy; durations in seconds or ISO 8601.

    The team is the application's owner in the CMDB; a `team` that names another is refused.
    """

    team: Name | None = None
    min_replicas: Count32
    max_replicas: Positive32
    target_utilisation: Annotated[float, Field(gt=0, le=1)] = 0.6
    scale_up_cooldown: Duration = timedelta(minutes=1)
    scale_down_cooldown: Duration = timedelta(minutes=5)
    max_step_up: Positive32 = 4
    max_step_down: Positive32 = 2
    max_actions_per_hour: Positive32 = 12
    request: InstanceRequest = InstanceRequest(cpu_millis=500, memory_mib=512)
    spread: SpreadRule = SpreadRule()


class PolicyOut(BaseModel):
    """A stored policy, where it came from and who set it."""

    app: str
    team: str
    policy: dict[str, Any]
    source: str
    updated_by: str
    updated_at: datetime


class BudgetIn(_In):
    """How much a team may spend per period."""

    period: Period = "month"
    unit: Literal["replica_hours", "cost"] = "replica_hours"
    limit: Annotated[Finite, Field(ge=0)]
    cost_per_replica_hour: Annotated[Finite, Field(gt=0)] = 1.0


class BudgetOut(BaseModel):
    """A team's budget and what it used so far in the current period."""

    budget: TeamBudget
    period_start: datetime
    period_end: datetime
    limit_replica_hours: float
    used_replica_hours: float
    remaining_replica_hours: float
    used_by_app: dict[str, float]
    updated_by: str
    updated_at: datetime


class QuotaIn(_In):
    """The CPU and memory a team may claim in one zone or pool."""

    cpu_millis: Count64
    memory_mib: Count64


class QuotaOut(BaseModel):
    """A team's quota in one zone or pool."""

    team: str
    scope: Literal["zone", "pool"]
    name: str
    cpu_millis: int
    memory_mib: int
    updated_by: str
    updated_at: datetime


class OutcomeOut(BaseModel):
    """What elastic did with one scale decision, and why."""

    decision_id: str
    app: str
    team: str
    cause: str
    action: str
    current_replicas: int
    requested_replicas: int
    final_replicas: int
    placement: dict[str, int]
    clipped_by: list[dict[str, Any]]
    hold_reason: str | None
    notes: list[str]
    change_request_id: str | None
    decided_at: datetime
    inputs: dict[str, Any]


class CapacityRow(BaseModel):
    """Free capacity in one zone and pool, and how many instances of the asked size fit."""

    zone: str
    pool: str
    hosts: int
    free_cpu_millis: int
    free_memory_mib: int
    slots: int


class CapacityOut(BaseModel):
    """Free capacity per zone and pool from the CMDB's hosts that are up."""

    request: InstanceRequest
    pools: list[CapacityRow]
    zones: dict[str, int]


class MigrationIn(_In):
    """Move every instance out of a zone or pool (into another, if given), in batches."""

    source: Scope
    target: Scope | None = None
    max_batch_size: Annotated[int, Field(ge=1, le=1000)] = 1
    reason: Annotated[str, NoNul, Field(max_length=500)] = "batch migration"


class MigrationOut(BaseModel):
    """The plan, the unmovable instances with reasons, and the change requested per application."""

    id: str
    plan: MigrationPlan
    change_requests: dict[str, str]
