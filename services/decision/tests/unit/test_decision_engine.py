"""The live engine around the policies: windows once, in order, with a learned capacity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from decision.cmdb import SpecHints, hints_from_spec
from decision.engine import Engine, decision_id
from ooda.events import MetricObserved
from ooda.events.contracts import MetricValues

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 30, 12, tzinfo=UTC)
STEP = timedelta(seconds=30)


def window(i: int, rate: float, ready: int = 2, error_rate: float | None = 0.0) -> MetricObserved:
    end = T0 + i * STEP
    return MetricObserved(
        app="shop",
        window_start=end - STEP,
        window_end=end,
        values=MetricValues(request_rate=rate, ready_instances=ready, error_rate=error_rate),
        instance_count=ready,
    )


def engine() -> Engine:
    return Engine("predictive", prior_capacity_rps=10.0, default_delay_s=30.0)


def test_a_window_is_decided_once_even_when_delivered_again() -> None:
    model = engine().new_model("shop", SpecHints(capacity_rps=10.0), None)
    assert model.step(window(1, 10.0)) is not None
    assert model.step(window(1, 10.0)) is None
    assert model.step(window(0, 10.0)) is None  # older than what was seen
    assert model.observed == 1


def test_a_load_step_raises_the_replica_count() -> None:
    model = engine().new_model("shop", SpecHints(capacity_rps=10.0, max_replicas=50), None)
    for i in range(10):
        model.step(window(i, 10.0))
    result = model.step(window(10, 100.0))
    assert result is not None
    decision, _ = result
    assert decision.replicas > 2 and "scale-up" in decision.reason


def test_shed_load_teaches_a_lower_capacity_than_the_prior() -> None:
    model = engine().new_model("shop", SpecHints(capacity_rps=100.0, latency_p99_ms=100.0), None)
    before = model.capacity.estimate().per_instance
    for i in range(5):
        model.step(window(i, 60.0, ready=2, error_rate=0.3))  # 30 req/s per instance, failing
    assert model.capacity.estimate().per_instance < min(before, 30.0)


def test_an_unknown_policy_name_falls_back_to_the_default() -> None:
    model = engine().new_model("shop", SpecHints(policy="no-such-policy"), None)
    assert model.policy.name == "predictive"


def test_decision_ids_are_stable_per_app_and_window() -> None:
    assert decision_id("shop", T0) == decision_id("shop", T0)
    assert decision_id("shop", T0) != decision_id("shop", T0 + STEP)
    assert decision_id("shop", T0) != decision_id("cart", T0)


def test_spec_hints_are_read_from_a_cmdb_spec_document() -> None:
    hints = hints_from_spec(
        {
            "replicas": {"min": 2, "max": 9, "desired": 3},
            "scaling": {"policy": "hpa", "target_utilisation": 0.5},
            "slo": {"latency_p99_ms": 120},
            "attributes": {"capacity_rps": 40},
        }
    )
    assert hints == SpecHints("hpa", 2, 9, 0.5, 120, 40.0)


def test_a_gap_of_years_starts_the_load_model_afresh_instead_of_walking_it() -> None:
    model = engine().new_model("shop", SpecHints(capacity_rps=10.0), None)
    old = model.policy
    for i in range(5):
        model.step(window(i, 10.0))
    far = window(5, 10.0).model_copy(
        update={
            "window_start": T0 + timedelta(days=3 * 365),
            "window_end": T0 + timedelta(days=3 * 365, seconds=30),
        }
    )
    assert model.step(far) is not None
    assert model.policy is not old


def test_the_hpa_policy_targets_the_spec_utilisation() -> None:
    model = engine().new_model("shop", SpecHints(policy="hpa", target_utilisation=0.5), None)
    assert model.policy.name == "hpa" and model.policy.knob == 0.5


def test_the_hpa_policy_sees_only_the_served_load_as_cpu_would() -> None:
    model = engine().new_model("shop", SpecHints(policy="hpa", capacity_rps=10.0), None)
    result = model.step(window(1, 100.0, ready=2, error_rate=0.8))
    assert result is not None
    assert result[0].inputs["last_load"] == pytest.approx(20.0)


def test_a_declared_scale_in_window_sets_the_pace_of_every_scale_in() -> None:
    hints = hints_from_spec({"scaling": {"policy": "predictive", "scale_in_window_s": 30}})
    assert hints.scale_in_window_s == 30.0
    predictive = engine().new_model("shop", hints, None).policy
    assert (predictive.window_s, predictive.hold_s) == (30, 360)
    hpa = engine().new_model("shop", SpecHints(policy="hpa", scale_in_window_s=60.0), None).policy
    assert hpa.window_s == 60.0
    default = engine().new_model("shop", SpecHints(), None).policy
    assert default.window_s is None  # tied to the provisioning delay


def test_the_hpa_policy_divides_by_the_declared_capacity_not_a_learned_one() -> None:
    model = engine().new_model(
        "shop", SpecHints(policy="hpa", capacity_rps=10.0, latency_p99_ms=100.0), None
    )
    for i in range(5):  # shedding teaches the estimator a lower capacity ...
        result = model.step(window(i, 16.0, ready=2, error_rate=0.3))
    assert model.capacity.estimate().per_instance < 10.0
    assert result is not None and result[0].capacity == 10.0  # ... which the hpa does not use


def test_a_declared_season_puts_the_forecaster_on_the_loads_own_clock() -> None:
    hints = hints_from_spec({"scaling": {"policy": "predictive", "season_s": 2880}})
    assert hints.season_s == 2880.0
    model = engine().new_model("shop", hints, None)
    model.step(window(1, 10.0))
    # 30-s windows of a 48-minute cycle are 15-minute steps of its day.
    assert model.policy.forecaster.step_s == 900.0
    naive = engine().new_model("shop", SpecHints(policy="seasonal-naive", season_s=3600.0), None)
    assert naive.policy.period_s == 3600.0
