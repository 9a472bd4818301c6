"""Which queued change of an application may start now, and which requests are held or dropped."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Annotated

from pydantic import Field

from pipeline.domain.change import Change, ChangeState
from pipeline.domain.errors import DomainError
from pipeline.domain.model import ChangeKind, Pin, ValueObject

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(
    r"^\s*(?P<days>[A-Za-z,\- ]+?)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})"
    r"(\s+UTC)?\s*$",
    re.IGNORECASE,
)


class InvalidWindow(DomainError, ValueError):
    """A change window written in a form the pipeline cannot read."""


def _one_application(queue: Iterable[Change]) -> list[Change]:
    changes = list(queue)
    if len({change.application for change in changes}) > 1:
        raise DomainError("a queue holds the changes of one application")
    return changes


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise DomainError("times must carry a timezone")
    return now.astimezone(UTC)


class Freeze(ValueObject):
    """A global stop on releases, with who declared it, why, and until when."""

    reason: str
    actor: str
    since: datetime
    until: datetime | None = None

    def holds_at(self, now: datetime) -> bool:
        """Whether the freeze is in force at `now`."""
        return self.since <= now and (self.until is None or now < self.until)

    def describe(self) -> str:
        """Say who froze releases, why and until when."""
        until = f" until {self.until:%Y-%m-%d %H:%M %Z}" if self.until else ""
        return f"releases are frozen by {self.actor}{until}: {self.reason}"


class ChangeWindow(ValueObject):
    """A weekly UTC window for an application's changes; an end not after the start is next day."""

    days: frozenset[Annotated[int, Field(ge=0, le=6)]] = Field(min_length=1)
    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> ChangeWindow:
        """Read a window such as 'Mon-Fri 09:00-17:00 UTC' or 'Sat,Sun 22:00-02:00'."""
        match = _WINDOW.match(text)
        if match is None:
            raise InvalidWindow(
                f"cannot read change window {text!r}; write e.g. 'Mon-Fri 09:00-17:00'"
            )
        days: set[int] = set()
        for part in match["days"].replace(" ", "").lower().split(","):
            first, _, last = part.partition("-")
            if first not in _DAYS or (last and last not in _DAYS):
                raise InvalidWindow(f"unknown day in change window {text!r}")
            day, end_day = _DAYS.index(first), _DAYS.index(last or first)
            days.add(day)
            while day != end_day:
                day = (day + 1) % 7
                days.add(day)
        try:
            start, end = (_clock(match[edge]) for edge in ("start", "end"))
        except ValueError as error:
            raise InvalidWindow(f"bad time in change window {text!r}: {error}") from None
        return cls(days=frozenset(days), start=start, end=end)

    def contains(self, now: datetime) -> bool:
        """Whether `now` falls inside this window."""
        moment = _utc(now)
        clock, day = moment.time(), moment.weekday()
        if self.start < self.end:
            return day in self.days and self.start <= clock < self.end
        return (day in self.days and clock >= self.start) or (
            (day - 1) % 7 in self.days and clock < self.end
        )

    def next_opening(self, now: datetime) -> datetime:
        """The first time after `now` at which this window opens."""
        moment = _utc(now)
        for offset in range(8):
            day = moment.date() + timedelta(days=offset)
            opening = datetime.combine(day, self.start, UTC)
            if day.weekday() in self.days and opening > moment:
                return opening
        raise AssertionError("a weekly window opens within eight days")

    def describe(self) -> str:
        """Write the window back in the form `parse` reads."""
        days = ",".join(_DAYS[day].title() for day in sorted(self.days))
        return f"{days} {self.start:%H:%M}-{self.end:%H:%M} UTC"


@dataclass(frozen=True)
class StartDecision:
    """The change that may start now, or the queued change held back and why."""

    start: Change | None
    held: Change | None
    reason: str


def next_to_start(
    queue: Iterable[Change],
    freeze: Freeze | None,
    windows: Sequence[ChangeWindow],
    now: datetime,
) -> StartDecision:
    """Decide which of an application's changes may start now, or why none may."""
    changes = _one_application(queue)
    waiting = sorted(
        (change for change in changes if change.state is ChangeState.PENDING),
        key=lambda change: (not change.emergency, change.created_at),
    )
    if not waiting:
        return StartDecision(None, None, "no change is waiting")
    head = waiting[0]
    active = next((change for change in changes if change.is_active), None)
    if active is not None:
        return StartDecision(None, head, f"waits for change {active.id} ({active.position})")
    if head.emergency:
        return StartDecision(head, None, "emergency change bypasses freeze and change windows")
    if freeze is not None and freeze.holds_at(now):
        return StartDecision(None, head, freeze.describe())
    if windows and not any(window.contains(now) for window in windows):
        opening = min(window.next_opening(now) for window in windows)
        declared = "; ".join(window.describe() for window in windows)
        return StartDecision(
            None,
            head,
            f"outside the change windows of {head.application} ({declared});"
            f" the next opens at {opening:%a %Y-%m-%d %H:%M} UTC",
        )
    return StartDecision(head, None, "next in line")


def supersede_scale_requests(queue: Iterable[Change], at: datetime) -> list[Change]:
    """Drop queued scale requests that a newer queued scale request replaces; return them."""
    scales = sorted(
        (
            change
            for change in _one_application(queue)
            if change.state is ChangeState.PENDING and change.kind is ChangeKind.SCALE
        ),
        key=lambda change: change.created_at,
    )
    if not scales:
        return []
    newest = scales[-1]
    dropped = [change for change in scales[:-1] if newest.emergency or not change.emergency]
    for change in dropped:
        change.supersede(newest.id, at)
    return dropped


def blocked_by_pin(pin: Pin | None, change: Change) -> str | None:
    """Say why an automated change may not re-apply a rolled-back state, or None if it may run."""
    if (
        pin is None
        or pin.application != change.application
        or not change.cause.automated
        or pin.lifted_by(change.target.revision)
    ):
        return None
    pinned = f"change {pin.change_id} rolled back {change.application} ({pin.reason})"
    if pin.revision is not None and change.target.revision == pin.revision:
        return f"{pinned}; revision {pin.revision} stays pinned until the declared spec changes"
    if pin.version is not None and change.target.version == pin.version:
        return f"{pinned}; version {pin.version} stays pinned until the declared spec changes"
    return None
