"""The latest-decision gauges: forecast against the capacity of the ready and decided replicas."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from decision.metrics import families

pytestmark = pytest.mark.unit


def row(app: str, capacity: float | None, forecast: dict[str, float] | None) -> SimpleNamespace:
    return SimpleNamespace(
        app=app,
        policy="predictive",
        current_replicas=2,
        desired_replicas=3,
        capacity_per_instance=capacity,
        forecast=forecast,
    )


def values(rows: list[SimpleNamespace]) -> dict[tuple[str, str], float]:
    return {(s.name, s.labels["app"]): s.value for family in families(rows) for s in family.samples}


def test_capacity_is_per_instance_capacity_times_ready_and_decided_replicas() -> None:
    got = values([row("shop", 40.0, {"value": 95.5, "horizon_s": 120.0, "quantile": 0.9})])
    assert got[("ooda_decision_forecast_rps", "shop")] == 95.5
    assert got[("ooda_decision_forecast_horizon_seconds", "shop")] == 120.0
    assert got[("ooda_decision_capacity_rps", "shop")] == 80.0
    assert got[("ooda_decision_planned_capacity_rps", "shop")] == 120.0
    assert got[("ooda_decision_desired_replicas", "shop")] == 3
    assert got[("ooda_decision_current_replicas", "shop")] == 2


def test_an_unknown_capacity_or_forecast_is_left_out_rather_than_shown_as_zero() -> None:
    got = values([row("cart", math.nan, None), row("web", 0.0, {"value": math.inf})])
    assert ("ooda_decision_desired_replicas", "cart") in got
    assert not {name for name, _ in got} & {
        "ooda_decision_capacity_rps",
        "ooda_decision_planned_capacity_rps",
        "ooda_decision_capacity_per_instance_rps",
        "ooda_decision_forecast_rps",
    }
