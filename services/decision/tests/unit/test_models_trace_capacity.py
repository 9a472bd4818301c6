"""Trace loading keeps gaps as missing; the capacity estimator learns from telemetry."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from decision.models import CapacityEstimator, Targets, load_trace

pytestmark = pytest.mark.unit


def test_gaps_and_invalid_values_become_missing_on_a_regular_grid(tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text(
        "timestamp,value\n"
        "2018-04-25T00:00:00Z,1.0\n"
        "2018-04-25T00:01:00Z,-3\n"  # negative: a failed meter, not a load
        "2018-04-25T00:02:00Z,nan\n"
        "2018-04-25T00:03:00Z,\n"
        "2018-04-25T00:06:00Z,5.0\n"  # two steps never reported
        "2018-04-25T00:07:00Z,6.0\n"
        "2018-04-25T00:08:00Z,7.0\n"
    )
    trace = load_trace(csv)
    assert trace.step_s == 60.0 and trace.n == 9
    assert np.isnan(trace.values[1:6]).all()
    assert trace.values[[0, 6, 7, 8]].tolist() == [1.0, 5.0, 6.0, 7.0]
    assert trace.missing == 5 and trace.peak() == 7.0
    assert trace.split_index == 6  # round(0.7 * 9)


def test_a_file_without_the_header_is_refused(tmp_path: Path) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text("time,load\n1,2\n")
    with pytest.raises(ValueError, match="timestamp,value"):
        load_trace(csv)


def test_capacity_is_the_prior_before_any_observation() -> None:
    # The declared capacity is the most one instance serves (100%); within the default CPU
    # target (70%) it serves 70% of that.
    estimate = CapacityEstimator(50.0).estimate()
    assert estimate.at_saturation == 50.0
    assert estimate.per_instance == pytest.approx(0.7 * 50.0) and estimate.limited_by == "prior"


def test_capacity_is_learnt_from_cpu_at_the_target() -> None:
    # Truth: 5% idle CPU plus 0.5% per request/s per instance, so 70% CPU at 130 req/s and 100%
    # at 190; the declared capacity (75) is well under that.
    est = CapacityEstimator(75.0)
    rng = np.random.default_rng(4)
    targets = Targets(cpu_utilisation=0.7)
    for _ in range(400):
        instances = int(rng.integers(2, 10))
        per_instance = rng.uniform(20, 120)
        cpu = 0.05 + 0.005 * per_instance + rng.normal(0, 0.01)
        latest = est.observe(per_instance * instances, instances, cpu, None, targets)
    assert latest.limited_by == "cpu"
    assert latest.per_instance == pytest.approx(130.0, rel=0.05)
    assert latest.at_saturation == pytest.approx(190.0, rel=0.05)


def test_a_latency_breach_caps_capacity_below_what_cpu_suggests() -> None:
    est = CapacityEstimator(100.0)
    targets = Targets(cpu_utilisation=0.7, latency_p99_ms=200.0)
    for load in (100.0, 200.0, 300.0):  # fine
        est.observe(load, 4, 0.001 * load / 4, 80.0, targets)
    latest = est.observe(320.0, 4, 0.08, 900.0, targets)  # 80 req/s per instance breaks latency
    assert latest.limited_by == "latency"
    assert latest.per_instance == pytest.approx(0.95 * 80.0)


def test_a_latency_breach_while_instances_idle_teaches_nothing() -> None:
    est = CapacityEstimator(10.0)
    targets = Targets(cpu_utilisation=0.6, latency_p99_ms=200.0)
    for _ in range(20):  # ~6 req/s per instance at the CPU target
        est.observe(20.0, 4, 0.3, 50.0, targets)
    before = est.estimate().per_instance
    # 8 req/s over 5 instances, a fraction of what they serve: a slow host, not load.
    latest = est.observe(8.0, 5, 0.1, 900.0, targets)
    assert latest.limited_by != "latency"
    assert latest.per_instance == pytest.approx(before, rel=0.1)


def test_observations_without_instances_or_load_teach_nothing() -> None:
    est = CapacityEstimator(10.0)
    assert est.observe(math.nan, 3, 0.5, None, Targets()).observations == 0
    assert est.observe(5.0, 0, 0.5, None, Targets()).observations == 0
