"""Team budgets: periods, replica-hours accounted from replica-count samples, what is affordable."""

import bisect
import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

Period = Literal["day", "week", "month"]
HOUR = timedelta(hours=1)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def period_bounds(period: Period, now: datetime) -> tuple[datetime, datetime]:
    """The UTC start (inclusive) and end (exclusive) of the budget period containing `now`."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day, day + timedelta(days=1)
    if period == "week":
        monday = day - timedelta(days=day.weekday())
        return monday, monday + timedelta(days=7)
    first = day.replace(day=1)
    return first, (first + timedelta(days=32)).replace(day=1)


class TeamBudget(_Frozen):
    """How much a team may spend per period, in replica-hours or in money."""

    team: str
    period: Period = "month"
    unit: Literal["replica_hours", "cost"] = "replica_hours"
    limit: Annotated[float, Field(ge=0)]
    cost_per_replica_hour: Annotated[float, Field(gt=0)] = 1.0

    @property
    def limit_replica_hours(self) -> float:
        """The limit expressed in replica-hours."""
        if self.unit == "replica_hours":
            return self.limit
        return self.limit / self.cost_per_replica_hour


class ReplicaSample(_Frozen):
    """An application ran `replicas` instances from `at` until the next sample."""

    at: AwareDatetime
    replicas: Annotated[int, Field(ge=0)]


class UsageTimeline(_Frozen):
    """One application's replica count over time, in time order with one sample per instant."""

    app_id: str
    samples: tuple[ReplicaSample, ...] = ()

    def record(self, sample: ReplicaSample) -> "UsageTimeline":
        """Add a sample; replaying one already recorded changes nothing, in any order."""
        times = [s.at for s in self.samples]
        index = bisect.bisect_left(times, sample.at)
        samples = list(self.samples)
        if index < len(samples) and samples[index].at == sample.at:
            # Two reports for one instant: keep the larger count, so the result does not
            # depend on the order they arrive in and budgets are never under-counted.
            if samples[index].replicas >= sample.replicas:
                return self
            samples[index] = sample
        else:
            samples.insert(index, sample)
        return self.model_copy(update={"samples": tuple(samples)})

    def replica_hours(self, start: datetime, end: datetime) -> float:
        """Replica-hours used between `start` and `end` (nothing runs before the first sample)."""
        if not self.samples:
            return 0.0
        total = 0.0
        for sample, following in zip(self.samples, (*self.samples[1:], None), strict=True):
            begin = max(sample.at, start)
            finish = min(following.at if following else end, end)
            if finish > begin:
                total += sample.replicas * ((finish - begin) / HOUR)
        return total


def used_replica_hours(timelines: Iterable[UsageTimeline], period: Period, now: datetime) -> float:
    """Replica-hours a team's applications used so far in the period containing `now`."""
    start, _ = period_bounds(period, now)
    return sum(timeline.replica_hours(start, now) for timeline in timelines)


class BudgetUsage(_Frozen):
    """A team's budget, what it used so far this period, and what its other applications run now."""

    budget: TeamBudget
    used_replica_hours: Annotated[float, Field(ge=0)]
    other_replicas: Annotated[int, Field(ge=0)] = 0

    def remaining_replica_hours(self) -> float:
        """Replica-hours left in the period (negative when already overspent)."""
        return self.budget.limit_replica_hours - self.used_replica_hours

    def affordable_replicas(self, now: datetime) -> int:
        """The most replicas this application can run from now to the period's end within budget."""
        _, end = period_bounds(self.budget.period, now)
        hours_left = (end - now) / HOUR
        per_hour = self.remaining_replica_hours() / hours_left
        return max(math.floor(per_hour + 1e-9) - self.other_replicas, 0)
