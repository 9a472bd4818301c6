"""Domain events a change records as it moves; handlers turn them into outbox messages."""

from __future__ import annotations

from datetime import datetime

from pipeline.domain.model import Pin, ValueObject


class DomainEvent(ValueObject):
    """Something that happened to a change, at a given time."""

    change_id: str
    application: str
    at: datetime


class ChangeHeld(DomainEvent):
    reason: str


class ChangeSuperseded(DomainEvent):
    by: str


class ChangePlanned(DomainEvent):
    batches: int
    rollback: bool


class BatchStarted(DomainEvent):
    batch: int
    of: int
    rollback: bool


class BatchSucceeded(DomainEvent):
    batch: int
    of: int
    rollback: bool


class BatchFailed(DomainEvent):
    batch: int
    of: int
    rollback: bool
    reason: str


class ChangePaused(DomainEvent):
    reason: str
    resume_at: datetime | None


class ChangeResumed(DomainEvent):
    pass


class ChangeSucceeded(DomainEvent):
    pass


class ChangeFailed(DomainEvent):
    reason: str


class RollbackStarted(DomainEvent):
    reason: str


class ChangeRolledBack(DomainEvent):
    pin: Pin | None


class AbortRequested(DomainEvent):
    reason: str


class ChangeAborted(DomainEvent):
    reason: str
