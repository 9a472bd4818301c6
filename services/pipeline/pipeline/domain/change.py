"""The Change: a state machine from request to outcome that records events instead of publishing."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, PrivateAttr, model_validator

from pipeline.domain import events
from pipeline.domain.errors import DomainError, IllegalTransition, InvalidChange
from pipeline.domain.model import (
    CanaryResume,
    Cause,
    ChangeKind,
    Pin,
    Plan,
    Target,
)


class ChangeState(StrEnum):
    """Where a change is on its way from request to outcome."""

    PENDING = "pending"
    PLANNED = "planned"
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"


ACTIVE_STATES = frozenset(
    {ChangeState.PLANNED, ChangeState.RUNNING, ChangeState.PAUSED, ChangeState.ROLLING_BACK}
)
FINISHED_STATES = frozenset(
    {ChangeState.SUCCEEDED, ChangeState.FAILED, ChangeState.ROLLED_BACK, ChangeState.ABORTED}
)


class Progress(BaseModel):
    """How many batches of a plan were started and how many finished well."""

    started: int = 0
    done: int = 0

    @property
    def in_flight(self) -> bool:
        """Whether a batch was started and has not reported yet."""
        return self.started > self.done


class Change(BaseModel):
    """A request to alter an application's instances, carried through plan, batches and outcome."""

    id: str
    application: str
    kind: ChangeKind
    idempotency_key: str
    actor: str
    cause: Cause
    emergency: bool = False
    created_at: datetime
    target: Target
    state: ChangeState = ChangeState.PENDING
    reason: str | None = None
    updated_at: datetime | None = None
    rollout_plan: Plan | None = None
    rollout_progress: Progress = Field(default_factory=Progress)
    rollback_plan: Plan | None = None
    rollback_progress: Progress = Field(default_factory=Progress)
    resume_at: datetime | None = None
    abort_reason: str | None = None

    _events: list[events.DomainEvent] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _target_fits_kind(self) -> Change:
        needs = {
            ChangeKind.DEPLOY: ("version", self.target.version is not None),
            ChangeKind.ROLLBACK: ("version", self.target.version is not None),
            ChangeKind.SCALE: ("replicas", self.target.replicas is not None),
            ChangeKind.MIGRATE: ("placement", not self.target.placement.anywhere),
        }
        field, present = needs.get(self.kind, ("", True))
        if not present:
            raise InvalidChange(f"a {self.kind} change needs a target {field}")
        return self

    @property
    def is_active(self) -> bool:
        """Whether the change holds its application's single slot for running changes."""
        return self.state in ACTIVE_STATES

    @property
    def is_finished(self) -> bool:
        """Whether the change has reached an outcome."""
        return self.state in FINISHED_STATES

    @property
    def position(self) -> str:
        """Where the change stands, e.g. 'running batch 2 of 5'."""
        plan, progress = self._current()
        phase = self.state.replace("_", " ")
        if plan is None or not progress.started:
            return phase
        at = " at" if self.state is ChangeState.PAUSED else ""
        return f"{phase}{at} batch {progress.started} of {len(plan.batches)}"

    def pull_events(self) -> list[events.DomainEvent]:
        """Hand over the events recorded since the last call and forget them."""
        recorded, self._events = self._events, []
        return recorded

    def hold(self, reason: str, at: datetime) -> None:
        """Say why the queued change may not start yet (recorded once per distinct reason)."""
        self._require("hold", self.state is ChangeState.PENDING, "only a queued change is held")
        if reason != self.reason:
            self.reason = reason
            self._record(events.ChangeHeld, at, reason=reason)

    def supersede(self, by: str, at: datetime) -> None:
        """Drop the queued change because a newer request replaces it."""
        self._require("supersede", self.state is ChangeState.PENDING, "only a queued change is")
        self._finish(ChangeState.ABORTED, f"superseded by change {by}", at)
        self._record(events.ChangeSuperseded, at, by=by)

    def plan(self, plan: Plan, at: datetime) -> None:
        """Accept the rollout plan of a queued change, or the rollback plan it waits for."""
        if self.state is ChangeState.PENDING:
            self._expect_plan(plan, rollback=False)
            self.rollout_plan = plan
            self._move(ChangeState.PLANNED, None, at)
        elif self._awaiting_rollback_plan:
            self._expect_plan(plan, rollback=True)
            self.rollback_plan = plan
            self.updated_at = at
        else:
            raise IllegalTransition(self.id, "plan", self.state, "it has its plan already")
        self._record(events.ChangePlanned, at, batches=len(plan.batches), rollback=plan.rollback)
        if not plan.batches:
            self._complete(at)

    def planning_failed(self, reason: str, at: datetime) -> None:
        """Fail the change because no plan fits (e.g. not enough capacity)."""
        allowed = self.state is ChangeState.PENDING or self._awaiting_rollback_plan
        self._require("fail planning of", allowed, "it is not waiting for a plan")
        self._finish(ChangeState.FAILED, reason, at)
        self._record(events.ChangeFailed, at, reason=reason)

    def start_batch(self, at: datetime) -> int:
        """Start the next batch of the current plan and return its number."""
        plan, progress = self._current()
        runnable = self.state in (
            ChangeState.PLANNED,
            ChangeState.RUNNING,
            ChangeState.ROLLING_BACK,
        )
        self._require("start a batch of", runnable)
        if plan is None:
            raise IllegalTransition(self.id, "start a batch of", self.state, "it has no plan yet")
        if progress.in_flight:
            raise IllegalTransition(
                self.id, "start a batch of", self.state, f"batch {progress.started} is running"
            )
        if progress.started == len(plan.batches):
            raise IllegalTransition(self.id, "start a batch of", self.state, "no batch is left")
        progress.started += 1
        if self.state is ChangeState.PLANNED:
            self.state = ChangeState.RUNNING
        self.updated_at = at
        self._record_batch(events.BatchStarted, at)
        return progress.started

    def batch_succeeded(self, at: datetime) -> None:
        """Record that the running batch finished healthy, and move on from there."""
        plan, progress = self._in_flight("record success of a batch of")
        progress.done += 1
        self.updated_at = at
        self._record_batch(events.BatchSucceeded, at)
        if progress.done == len(plan.batches):
            self._complete(at)
        elif self.abort_reason is not None:
            self._abort(self.abort_reason, at)
        elif self._canary_just_passed(plan):
            assert plan.canary is not None
            resume_at = None
            if plan.canary.resume is CanaryResume.AUTO:
                resume_at = at + plan.canary.delay
            self._pause("canary batch succeeded", at, resume_at)

    def batch_failed(self, reason: str, at: datetime) -> None:
        """Record that the running batch failed: a rollout then rolls back, a rollback fails."""
        plan, progress = self._in_flight("record failure of a batch of")
        self._record_batch(events.BatchFailed, at, reason=reason)
        where = f"batch {progress.started} of {len(plan.batches)} failed: {reason}"
        if self.state is ChangeState.ROLLING_BACK:
            self._finish(ChangeState.FAILED, f"rollback {where}", at)
            self._record(events.ChangeFailed, at, reason=self.reason)
        else:
            self._start_rollback(where, at)

    def pause(self, at: datetime, reason: str = "paused on request") -> None:
        """Hold the rollout before its next batch (a running batch still finishes)."""
        allowed = self.state in (ChangeState.PLANNED, ChangeState.RUNNING)
        self._require("pause", allowed, "only a planned or running rollout pauses")
        self._pause(reason, at, None)

    def resume(self, at: datetime) -> None:
        """Let a paused rollout go on with its next batch."""
        self._require("resume", self.state is ChangeState.PAUSED)
        started = self.rollout_progress.started > 0
        self._move(ChangeState.RUNNING if started else ChangeState.PLANNED, None, at)
        self.resume_at = None
        self._record(events.ChangeResumed, at)

    def due_to_resume(self, now: datetime) -> bool:
        """Whether an automatic canary pause has run its delay."""
        return (
            self.state is ChangeState.PAUSED
            and self.resume_at is not None
            and now >= self.resume_at
        )

    def abort(self, reason: str, at: datetime) -> None:
        """Stop the change for good after any running batch, leaving no batch half done."""
        allowed = self.state in (
            ChangeState.PENDING,
            ChangeState.PLANNED,
            ChangeState.RUNNING,
            ChangeState.PAUSED,
        )
        self._require("abort", allowed, "only a queued, planned, running or paused change aborts")
        if self.abort_reason is not None:
            raise IllegalTransition(self.id, "abort", self.state, "an abort is already requested")
        if self.rollout_progress.in_flight:
            self.abort_reason = reason
            self.updated_at = at
            self._record(events.AbortRequested, at, reason=reason)
        else:
            self._abort(reason, at)

    def rollback_requested(self, reason: str, at: datetime) -> None:
        """Roll back a succeeded or aborted change that applied at least one batch."""
        allowed = self.state in (ChangeState.SUCCEEDED, ChangeState.ABORTED)
        self._require("roll back", allowed, "only a succeeded or aborted change rolls back")
        if not self.rollout_progress.started:
            raise IllegalTransition(self.id, "roll back", self.state, "it applied nothing")
        self._start_rollback(reason, at)

    @property
    def _awaiting_rollback_plan(self) -> bool:
        return self.state is ChangeState.ROLLING_BACK and self.rollback_plan is None

    def _current(self) -> tuple[Plan | None, Progress]:
        if self.state is ChangeState.ROLLING_BACK or self.rollback_plan is not None:
            return self.rollback_plan, self.rollback_progress
        return self.rollout_plan, self.rollout_progress

    def _in_flight(self, action: str) -> tuple[Plan, Progress]:
        plan, progress = self._current()
        allowed = self.state in (ChangeState.RUNNING, ChangeState.PAUSED, ChangeState.ROLLING_BACK)
        if not allowed or plan is None or not progress.in_flight:
            raise IllegalTransition(self.id, action, self.state, "no batch is running")
        return plan, progress

    def _canary_just_passed(self, plan: Plan) -> bool:
        return (
            self.state is ChangeState.RUNNING
            and plan.canary is not None
            and not plan.rollback
            and self.rollout_progress.done == 1
        )

    def _expect_plan(self, plan: Plan, rollback: bool) -> None:
        if plan.rollback is not rollback:
            wanted = "a rollback plan" if rollback else "a rollout plan"
            raise DomainError(f"change {self.id} expects {wanted}")

    def _complete(self, at: datetime) -> None:
        if self.state is ChangeState.ROLLING_BACK:
            self._move(ChangeState.ROLLED_BACK, self.reason, at)
            self._record(events.ChangeRolledBack, at, pin=self._pin(at))
        else:
            self._move(ChangeState.SUCCEEDED, None, at)
            self._record(events.ChangeSucceeded, at)

    def _start_rollback(self, reason: str, at: datetime) -> None:
        self._move(ChangeState.ROLLING_BACK, reason, at)
        self.abort_reason = None
        self.resume_at = None
        self._record(events.RollbackStarted, at, reason=reason)

    def _pause(self, reason: str, at: datetime, resume_at: datetime | None) -> None:
        self._move(ChangeState.PAUSED, reason, at)
        self.resume_at = resume_at
        self._record(events.ChangePaused, at, reason=reason, resume_at=resume_at)

    def _abort(self, reason: str, at: datetime) -> None:
        self._finish(ChangeState.ABORTED, reason, at)
        self._record(events.ChangeAborted, at, reason=reason)

    def _finish(self, state: ChangeState, reason: str, at: datetime) -> None:
        self._move(state, reason, at)
        self.abort_reason = None
        self.resume_at = None

    def _move(self, state: ChangeState, reason: str | None, at: datetime) -> None:
        self.state = state
        self.reason = reason
        self.updated_at = at

    def _pin(self, at: datetime) -> Pin | None:
        version = self.target.version if self.kind is ChangeKind.DEPLOY else None
        if version is None and self.target.revision is None:
            return None
        return Pin(
            application=self.application,
            revision=self.target.revision,
            version=version,
            reason=self.reason or "rolled back",
            change_id=self.id,
            pinned_at=at,
        )

    def _require(self, action: str, allowed: bool, why: str = "") -> None:
        if not allowed:
            raise IllegalTransition(self.id, action, self.state, why)

    def _record(self, kind: type[events.DomainEvent], at: datetime, **fields: Any) -> None:
        self._events.append(kind(change_id=self.id, application=self.application, at=at, **fields))

    def _record_batch(self, kind: type[events.DomainEvent], at: datetime, **fields: Any) -> None:
        plan, progress = self._current()
        assert plan is not None
        self._record(
            kind,
            at,
            batch=progress.started,
            of=len(plan.batches),
            rollback=plan.rollback,
            **fields,
        )
