"""The public event contract of the platform: CloudEvents on Kafka with versioned payloads."""

from ooda.events.contracts import (
    CATALOG,
    AlertRaised,
    ChangeProgressed,
    ChangeRequested,
    CmdbChanged,
    DeployDone,
    EventSpec,
    MetricObserved,
    Payload,
    ScaleDecided,
    spec_for_payload,
    spec_for_type,
)
from ooda.events.envelope import DecodeError, Event, decode, encode, verify_source

__all__ = [
    "CATALOG",
    "AlertRaised",
    "ChangeProgressed",
    "ChangeRequested",
    "CmdbChanged",
    "DecodeError",
    "DeployDone",
    "Event",
    "EventSpec",
    "MetricObserved",
    "Payload",
    "ScaleDecided",
    "decode",
    "encode",
    "spec_for_payload",
    "spec_for_type",
    "verify_source",
]
