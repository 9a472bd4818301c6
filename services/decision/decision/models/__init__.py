"""Modelling core of the decision service: traces, forecasts, capacity, policies, replay, scores.

Pure Python/numpy domain code: no Kafka, no database. The service wiring feeds the same policy
objects live that `simulate` replays offline.
"""

from decision.models.capacity import CapacityEstimate, CapacityEstimator, Targets
from decision.models.forecast import (
    Forecaster,
    ForecastTape,
    ReplayForecaster,
    SeasonalForecaster,
)
from decision.models.policies import (
    POLICIES,
    Decision,
    HpaPolicy,
    Observation,
    OraclePolicy,
    Policy,
    PredictivePolicy,
    SeasonalNaivePolicy,
    StaticPeakPolicy,
    make_policy,
)
from decision.models.simulate import Metrics, Run, capacity_for, measure, simulate
from decision.models.trace import Trace, load_trace

__all__ = [
    "POLICIES",
    "CapacityEstimate",
    "CapacityEstimator",
    "Decision",
    "ForecastTape",
    "Forecaster",
    "HpaPolicy",
    "Metrics",
    "Observation",
    "OraclePolicy",
    "Policy",
    "PredictivePolicy",
    "ReplayForecaster",
    "Run",
    "SeasonalForecaster",
    "SeasonalNaivePolicy",
    "StaticPeakPolicy",
    "Targets",
    "Trace",
    "capacity_for",
    "load_trace",
    "make_policy",
    "measure",
    "simulate",
]
