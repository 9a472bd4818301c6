"""Alert rules per application, evaluated each interval into AlertRaised / AlertResolved values.

A rule and an application have at most one alert at a time (deduplication): an evaluation emits
an event only when the alert starts or stops firing. A rule fires after its condition has held
for `for_duration` and resolves only once the value is back past a lower clear threshold for
`clear_duration` (hysteresis), so a value hovering around the threshold does not flap.
"""

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from monitor.domain.histogram import merge
from monitor.domain.names import Metric
from monitor.domain.rollup import AppRollup

Severity = Literal["info", "warning", "critical"]
RuleKey = tuple[str, str]
"""Rule name and application id: the identity of one alert."""

_ALERT_NAMESPACE = uuid.UUID("5b0c8a4e-6c1f-4d0e-9a57-0f6f1c2b9e31")


class Op(StrEnum):
    """How a value compares with a threshold for the condition to hold."""

    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="

    def holds(self, value: float, threshold: float) -> bool:
        """Whether `value op threshold`."""
        match self:
            case Op.GT:
                return value > threshold
            case Op.GE:
                return value >= threshold
            case Op.LT:
                return value < threshold
            case Op.LE:
                return value <= threshold


@dataclass(frozen=True, slots=True)
class ThresholdRule:
    """Fires while a metric's latest value is past a threshold; clears past `clear_threshold`."""

    name: str
    app_id: str
    metric: Metric
    op: Op
    threshold: float
    for_duration: timedelta = timedelta(0)
    clear_threshold: float | None = None
    clear_duration: timedelta = timedelta(0)
    severity: Severity = "warning"

    def __post_init__(self) -> None:
        if self.clear_threshold is not None and self.op.holds(self.clear_threshold, self.threshold):
            raise ValueError(f"rule {self.name}: clear threshold must not itself breach the rule")

    def observe(self, history: Sequence[AppRollup], now: datetime) -> float | None:
        """The metric's value in the newest rollup, None without data."""
        return max(history, key=lambda r: r.window_end).value(self.metric) if history else None

    def breaches(self, value: float | None) -> bool:
        """Whether the value starts (or keeps pending) an alert."""
        return value is not None and self.op.holds(value, self.threshold)

    def clears(self, value: float | None) -> bool:
        """Whether the value lets a firing alert resolve; no data clears."""
        limit = self.threshold if self.clear_threshold is None else self.clear_threshold
        return value is None or not self.op.holds(value, limit)

    def describe(self, value: float | None) -> str:
        """A one-line human summary of the observed value against the rule."""
        condition = f"{self.op.value} {self.threshold:g}"
        return f"{self.metric.value} is {_shown(value)} (alert when {condition})"


@dataclass(frozen=True, slots=True)
class BurnRateRule:
    """Fires when an SLO's error budget burns at `burn_rate` or faster over both windows."""

    name: str
    app_id: str
    objective: float
    # Without latency_threshold_ms the SLO is availability (a 5xx is bad); with it, a request
    # slower than the threshold is bad, counted from the merged latency histograms.
    short_window: timedelta
    long_window: timedelta
    burn_rate: float
    clear_burn_rate: float | None = None
    clear_duration: timedelta = timedelta(0)
    for_duration: timedelta = timedelta(0)
    latency_threshold_ms: float | None = None
    severity: Severity = "critical"

    def __post_init__(self) -> None:
        if not 0.0 < self.objective < 1.0:
            raise ValueError(f"rule {self.name}: objective must be within (0, 1)")
        if self.short_window >= self.long_window:
            raise ValueError(f"rule {self.name}: short window must be shorter than long window")
        if self.clear_burn_rate is not None and self.clear_burn_rate > self.burn_rate:
            raise ValueError(f"rule {self.name}: clear burn rate must not exceed the burn rate")

    @property
    def threshold(self) -> float:
        """The burn rate at which the rule fires."""
        return self.burn_rate

    def burn(self, history: Sequence[AppRollup], now: datetime, window: timedelta) -> float | None:
        """Budget burn over the window ending at `now`: bad share / allowed bad share."""
        inside = [r for r in history if r.window_start >= now - window and r.window_end <= now]
        if self.latency_threshold_ms is None:
            total = sum(r.requests for r in inside)
            bad = sum(r.errors for r in inside)
        else:
            latency = merge(r.latency for r in inside)
            total = latency.total
            bad = latency.count_above(self.latency_threshold_ms / 1000.0)
        if total <= 0:
            return None
        return bad / total / (1.0 - self.objective)

    def observe(self, history: Sequence[AppRollup], now: datetime) -> float | None:
        """The lower of the short- and long-window burn rates, None without traffic."""
        short = self.burn(history, now, self.short_window)
        long = self.burn(history, now, self.long_window)
        return None if short is None or long is None else min(short, long)

    def breaches(self, value: float | None) -> bool:
        """Whether both windows burn at least at the burn rate."""
        return value is not None and value >= self.burn_rate

    def clears(self, value: float | None) -> bool:
        """Whether either window has cooled below the clear burn rate; no traffic clears."""
        limit = self.burn_rate if self.clear_burn_rate is None else self.clear_burn_rate
        return value is None or value < limit

    def describe(self, value: float | None) -> str:
        """A one-line human summary of the burn against the SLO."""
        kind = (
            "availability"
            if self.latency_threshold_ms is None
            else (f"latency<={self.latency_threshold_ms:g}ms")
        )
        return (
            f"{kind} SLO {self.objective * 100:g}%: budget burning {_shown(value)}x over "
            f"{_span(self.short_window)} and {_span(self.long_window)} "
            f"(alert at {self.burn_rate:g}x)"
        )


Rule = ThresholdRule | BurnRateRule


def slo_burn_rules(
    app_id: str, objective: float, latency_threshold_ms: float | None = None
) -> tuple[BurnRateRule, BurnRateRule]:
    """The two multi-window burn-rate rules of the SRE workbook for one SLO of an application."""
    kind = "availability" if latency_threshold_ms is None else "latency"
    return (
        BurnRateRule(
            name=f"slo-{kind}-fast-burn",
            app_id=app_id,
            objective=objective,
            short_window=timedelta(minutes=5),
            long_window=timedelta(hours=1),
            burn_rate=14.4,
            clear_burn_rate=7.2,
            clear_duration=timedelta(minutes=5),
            latency_threshold_ms=latency_threshold_ms,
            severity="critical",
        ),
        BurnRateRule(
            name=f"slo-{kind}-slow-burn",
            app_id=app_id,
            objective=objective,
            short_window=timedelta(minutes=30),
            long_window=timedelta(hours=6),
            burn_rate=6.0,
            clear_burn_rate=3.0,
            clear_duration=timedelta(minutes=30),
            latency_threshold_ms=latency_threshold_ms,
            severity="warning",
        ),
    )


@dataclass(frozen=True, slots=True)
class OpenAlert:
    """The alert a rule has open for its application."""

    alert_id: str
    raised_at: datetime


@dataclass(frozen=True, slots=True)
class AlertState:
    """Where one rule stands for its application between evaluations; the default is quiet."""

    pending_since: datetime | None = None
    open: OpenAlert | None = None
    clear_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class AlertRaised:
    """A rule started firing for an application."""

    alert_id: str
    rule: str
    app_id: str
    severity: Severity
    value: float | None
    threshold: float
    at: datetime
    summary: str

    def as_payload(self) -> dict[str, Any]:
        """The alert-raised payload (ooda.events.AlertRaised) with state firing."""
        return _payload(self, "firing")


@dataclass(frozen=True, slots=True)
class AlertResolved:
    """A firing alert stopped firing."""

    alert_id: str
    rule: str
    app_id: str
    severity: Severity
    value: float | None
    threshold: float
    at: datetime
    raised_at: datetime
    summary: str

    def as_payload(self) -> dict[str, Any]:
        """The alert-raised payload (ooda.events.AlertRaised) with state resolved."""
        return _payload(self, "resolved")


AlertEvent = AlertRaised | AlertResolved


def evaluate(
    rule: Rule, state: AlertState, history: Sequence[AppRollup], now: datetime
) -> tuple[AlertState, AlertEvent | None]:
    """Advance one rule for its application by one interval; `history` is its recent rollups."""
    value = rule.observe(history, now)
    if state.open is None:
        if not rule.breaches(value):
            return AlertState(), None
        pending_since = state.pending_since or now
        if now - pending_since < rule.for_duration:
            return AlertState(pending_since=pending_since), None
        alert_id = str(uuid.uuid5(_ALERT_NAMESPACE, f"{rule.name}/{rule.app_id}/{now.isoformat()}"))
        raised = AlertRaised(
            alert_id=alert_id,
            rule=rule.name,
            app_id=rule.app_id,
            severity=rule.severity,
            value=value,
            threshold=rule.threshold,
            at=now,
            summary=rule.describe(value),
        )
        return AlertState(open=OpenAlert(alert_id, now)), raised
    if not rule.clears(value):
        return replace(state, clear_since=None), None
    clear_since = state.clear_since or now
    if now - clear_since < rule.clear_duration:
        return replace(state, clear_since=clear_since), None
    resolved = AlertResolved(
        alert_id=state.open.alert_id,
        rule=rule.name,
        app_id=rule.app_id,
        severity=rule.severity,
        value=value,
        threshold=rule.threshold,
        at=now,
        raised_at=state.open.raised_at,
        summary=rule.describe(value),
    )
    return AlertState(), resolved


def evaluate_rules(
    rules: Iterable[Rule],
    states: Mapping[RuleKey, AlertState],
    history_by_app: Mapping[str, Sequence[AppRollup]],
    now: datetime,
) -> tuple[dict[RuleKey, AlertState], list[AlertEvent]]:
    """Advance every rule by one interval: each rule's new state and the events to record."""
    new_states: dict[RuleKey, AlertState] = {}
    events: list[AlertEvent] = []
    for rule in rules:
        key = (rule.name, rule.app_id)
        if key in new_states:
            raise ValueError(f"rule {rule.name} is defined twice for application {rule.app_id}")
        history = history_by_app.get(rule.app_id, ())
        new_states[key], event = evaluate(rule, states.get(key, AlertState()), history, now)
        if event is not None:
            events.append(event)
    return new_states, events


def _payload(event: AlertEvent, state: str) -> dict[str, Any]:
    """The fields the alert-raised contract carries for either event."""
    return {
        "app": event.app_id,
        "alert_id": event.alert_id,
        "rule": event.rule,
        "state": state,
        "severity": event.severity,
        "value": event.value,
        "threshold": event.threshold,
        "summary": event.summary,
    }


def _shown(value: float | None) -> str:
    """A value for a summary line."""
    return "no data" if value is None else f"{value:.4g}"


def _span(window: timedelta) -> str:
    """A window length for a summary line, e.g. 5m or 1h."""
    seconds = int(window.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"
