"""Scaling policy: turn a scale decision into the replicas to request, recording why it clipped."""

from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PositiveInt, model_validator

from elastic.domain.budget import BudgetUsage, period_bounds
from elastic.domain.capacity import InstanceRequest, SpreadRule, place

Action = Literal["scale_up", "scale_down", "hold"]
RATE_WINDOW = timedelta(hours=1)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScalingPolicy(_Frozen):
    """The limits an application's owners put on automatic scaling."""

    app_id: str
    team: str
    min_replicas: Annotated[int, Field(ge=0)]
    max_replicas: PositiveInt
    target_utilisation: Annotated[float, Field(gt=0, le=1)] = 0.6
    scale_up_cooldown: timedelta = timedelta(minutes=1)
    scale_down_cooldown: timedelta = timedelta(minutes=5)
    max_step_up: PositiveInt = 4
    max_step_down: PositiveInt = 2
    max_actions_per_hour: PositiveInt = 12
    request: InstanceRequest = InstanceRequest(cpu_millis=500, memory_mib=512)
    spread: SpreadRule = SpreadRule()

    @model_validator(mode="after")
    def _bounds_ordered(self) -> Self:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas {self.min_replicas} is above max_replicas {self.max_replicas}"
            )
        return self


class Decision(_Frozen):
    """What the decision centre wants: a replica count and its reasons."""

    app_id: str
    desired_replicas: Annotated[int, Field(ge=0)]
    reasons: tuple[str, ...] = ()


class CurrentState(_Frozen):
    """Where the application is now: live replicas per zone and when it last scaled."""

    app_id: str
    replicas_by_zone: dict[str, Annotated[int, Field(ge=0)]]
    action_times: tuple[AwareDatetime, ...] = ()

    @property
    def replicas(self) -> int:
        """Live replicas over all zones."""
        return sum(self.replicas_by_zone.values())


class Rule(StrEnum):
    """A rule that can change the requested replica count."""

    BOUNDS = "bounds"
    COOLDOWN = "cooldown"
    RATE_LIMIT = "rate_limit"
    STEP = "step"
    BUDGET = "budget"
    CAPACITY = "capacity"
    SPREAD = "spread"


class Clip(_Frozen):
    """One rule moving the replica count, from what to what, and why."""

    rule: Rule
    from_replicas: int
    to_replicas: int
    reason: str


class Outcome(_Frozen):
    """What to request after policy, budget and capacity: a scale with its placement, or a hold."""

    app_id: str
    action: Action
    current_replicas: int
    requested_replicas: int
    final_replicas: int
    placement: dict[str, int]
    clipped_by: tuple[Clip, ...] = ()
    hold_reason: str | None = None
    notes: tuple[str, ...] = ()
    decision_reasons: tuple[str, ...] = ()


def _seconds(duration: timedelta) -> str:
    return f"{duration.total_seconds():g}s"


class _Clipper:
    """The replica target as each rule moves it, with the clips recorded."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.clips: list[Clip] = []

    def clip(self, rule: Rule, to: int, reason: str) -> None:
        if to != self.target:
            self.clips.append(
                Clip(rule=rule, from_replicas=self.target, to_replicas=to, reason=reason)
            )
            self.target = to


def apply_policy(
    decision: Decision,
    state: CurrentState,
    policy: ScalingPolicy,
    budget: BudgetUsage | None,
    capacity: Mapping[str, int],
    now: datetime,
) -> Outcome:
    """Clip a decision by bounds, cooldown, rate limit, step, budget, capacity and spread."""
    # `capacity` holds the extra instances placeable per eligible zone (from `zone_slots`).
    if not decision.app_id == state.app_id == policy.app_id:
        raise ValueError(
            f"decision, state and policy disagree on the application: "
            f"{decision.app_id}, {state.app_id}, {policy.app_id}"
        )
    current = state.replicas
    low, high = policy.min_replicas, policy.max_replicas
    clipper = _Clipper(decision.desired_replicas)
    clipper.clip(
        Rule.BOUNDS, min(max(clipper.target, low), high), f"policy allows {low}..{high} replicas"
    )
    scaling_up = clipper.target > current
    # A held-back move stays at the current count, but never outside the owners' bounds.
    settle = min(max(current, low), high)

    last_action = max(state.action_times, default=None)
    cooldown = policy.scale_up_cooldown if scaling_up else policy.scale_down_cooldown
    if last_action is not None and now - last_action < cooldown:
        clipper.clip(
            Rule.COOLDOWN,
            settle,
            f"last scale action {_seconds(now - last_action)} ago, "
            f"{'scale-up' if scaling_up else 'scale-down'} cooldown is {_seconds(cooldown)}",
        )
    recent = sum(1 for t in state.action_times if now - RATE_WINDOW < t <= now)
    if recent >= policy.max_actions_per_hour:
        clipper.clip(
            Rule.RATE_LIMIT,
            settle,
            f"{recent} scale actions in the last hour, limit {policy.max_actions_per_hour}",
        )

    if scaling_up:
        clipper.clip(
            Rule.STEP,
            max(min(clipper.target, current + policy.max_step_up), low),
            f"scale-up step limited to {policy.max_step_up}",
        )
        if budget is not None:
            _clip_by_budget(clipper, budget, current, low, now)
    else:
        clipper.clip(
            Rule.STEP,
            min(max(clipper.target, current - policy.max_step_down), high),
            f"scale-down step limited to {policy.max_step_down}",
        )

    placement = place(state.replicas_by_zone, clipper.target, capacity, policy.spread)
    if placement.stopped_by is not None and placement.reason is not None:
        below = f"; below min replicas {low}" if placement.total < low else ""
        clipper.clip(Rule(placement.stopped_by), placement.total, placement.reason + below)

    final = clipper.target
    action: Action = "hold" if final == current else "scale_up" if final > current else "scale_down"
    hold_reason = None
    if action == "hold":
        hold_reason = (
            clipper.clips[-1].reason if clipper.clips else f"already at {current} replicas"
        )
    return Outcome(
        app_id=policy.app_id,
        action=action,
        current_replicas=current,
        requested_replicas=decision.desired_replicas,
        final_replicas=final,
        placement=placement.counts,
        clipped_by=tuple(clipper.clips),
        hold_reason=hold_reason,
        notes=placement.notes,
        decision_reasons=decision.reasons,
    )


def _clip_by_budget(
    clipper: _Clipper, usage: BudgetUsage, current: int, low: int, now: datetime
) -> None:
    affordable = usage.affordable_replicas(now)
    allowed = max(min(clipper.target, max(affordable, current)), low)
    if allowed >= clipper.target:
        return
    _, end = period_bounds(usage.budget.period, now)
    reason = (
        f"team {usage.budget.team} has {usage.remaining_replica_hours():.1f} replica-hours left "
        f"until {end.isoformat()}, enough for {affordable} replicas of this application"
    )
    if allowed == low and affordable < low:
        reason += f"; kept at min replicas {low}"
    clipper.clip(Rule.BUDGET, allowed, reason)
