"""Alert rules as the API states them, as stored, and as the domain evaluates them."""

from datetime import timedelta
from typing import Any

from monitor.domain import BurnRateRule, Metric, Op, Rule, ThresholdRule, slo_burn_rules
from monitor.schemas import BurnRateRuleIn, RuleIn, SloRulesIn, ThresholdRuleIn


def expand(rule: RuleIn, app: str) -> list[dict[str, Any]]:
    """The stored specs of one requested rule (an SLO becomes its fast and slow burn rules)."""
    if isinstance(rule, SloRulesIn):
        return [
            _burn_spec(r) for r in slo_burn_rules(app, rule.objective, rule.latency_threshold_ms)
        ]
    return [rule.model_dump(mode="json")]


def rule_from_spec(app: str, spec: dict[str, Any]) -> Rule:
    """The domain rule of a stored spec; raises ValueError when the spec is inconsistent."""
    if spec["kind"] == "threshold":
        t = ThresholdRuleIn.model_validate(spec)
        return ThresholdRule(
            name=t.name,
            app_id=app,
            metric=Metric(t.metric),
            op=Op(t.op),
            threshold=t.threshold,
            for_duration=timedelta(seconds=t.for_seconds),
            clear_threshold=t.clear_threshold,
            clear_duration=timedelta(seconds=t.clear_seconds),
            severity=t.severity,
        )
    b = BurnRateRuleIn.model_validate(spec)
    return BurnRateRule(
        name=b.name,
        app_id=app,
        objective=b.objective,
        short_window=timedelta(seconds=b.short_window_seconds),
        long_window=timedelta(seconds=b.long_window_seconds),
        burn_rate=b.burn_rate,
        clear_burn_rate=b.clear_burn_rate,
        clear_duration=timedelta(seconds=b.clear_seconds),
        for_duration=timedelta(seconds=b.for_seconds),
        latency_threshold_ms=b.latency_threshold_ms,
        severity=b.severity,
    )


def _burn_spec(rule: BurnRateRule) -> dict[str, Any]:
    return BurnRateRuleIn(
        name=rule.name,
        objective=rule.objective,
        short_window_seconds=rule.short_window.total_seconds(),
        long_window_seconds=rule.long_window.total_seconds(),
        burn_rate=rule.burn_rate,
        clear_burn_rate=rule.clear_burn_rate,
        for_seconds=rule.for_duration.total_seconds(),
        clear_seconds=rule.clear_duration.total_seconds(),
        latency_threshold_ms=rule.latency_threshold_ms,
        severity=rule.severity,
    ).model_dump(mode="json")
