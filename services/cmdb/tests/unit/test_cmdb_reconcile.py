"""Closing the loop: drift from the declared spec; deploy-done instance sets applied in order."""

from datetime import UTC, datetime, timedelta

import pytest

from cmdb.domain import (
    ApplicationSpec,
    ImplausibleSequenceError,
    Instance,
    InstanceSetApplied,
    InstanceSetReport,
    ReplicaBounds,
    StaleInstanceSet,
    Watermark,
    apply_instance_set,
    detect_drift,
)

pytestmark = pytest.mark.unit

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def spec(version: str = "2.0.0", revision: int = 7, low: int = 2, high: int = 4) -> ApplicationSpec:
    return ApplicationSpec(
        id="web",
        revision=revision,
        artifact="registry/web",
        version=version,
        replicas=ReplicaBounds(min=low, desired=low, max=high),
    )


def instances(
    count: int, version: str = "2.0.0", status: str = "ready", app: str = "web"
) -> list[Instance]:
    return [
        Instance.model_validate(
            {
                "id": f"{app}-{n}",
                "app_id": app,
                "version": version,
                "host_id": f"h{n}",
                "zone_id": "zone-a",
                "endpoint": f"h{n}:8080",
                "status": status,
                "started_at": T0,
            }
        )
        for n in range(count)
    ]


def test_instances_inside_the_spec_need_no_change() -> None:
    assert detect_drift(spec(), instances(3)) is None


def test_a_wrong_running_version_asks_for_a_deploy_of_the_declared_version() -> None:
    change = detect_drift(spec(), instances(2, version="1.9.0"))

    assert change is not None
    assert (change.kind, change.version, change.replicas, change.spec_revision) == (
        "deploy",
        "2.0.0",
        2,
        7,
    )
    assert change.reason == "running version 1.9.0, spec says 2.0.0"


def test_too_few_live_instances_asks_to_scale_to_the_minimum() -> None:
    live = instances(1)
    failed = [i.model_copy(update={"id": "web-x", "status": "failed"}) for i in instances(3)]

    change = detect_drift(spec(), live + failed)

    assert change is not None
    assert (change.kind, change.replicas) == ("scale", 2)
    assert change.reason == "1 live instances, outside bounds 2..4"


def test_too_many_instances_asks_to_scale_to_the_maximum() -> None:
    change = detect_drift(spec(), instances(6))

    assert change is not None
    assert (change.kind, change.replicas) == ("scale", 4)


def test_an_application_with_nothing_running_asks_for_a_deploy_of_the_desired_replicas() -> None:
    change = detect_drift(spec(low=3, high=5), [])

    assert change is not None
    assert (change.kind, change.replicas) == ("deploy", 3)


def test_instances_of_other_applications_are_not_counted() -> None:
    assert detect_drift(spec(), instances(3) + instances(9, app="api", version="0.1")) is None


def test_the_same_drift_on_the_same_revision_yields_the_same_idempotency_key() -> None:
    first = detect_drift(spec(), instances(1))
    again = detect_drift(spec(), instances(1))
    next_revision = detect_drift(spec(revision=8), instances(1))

    assert first is not None and again is not None and next_revision is not None
    assert first.idempotency_key == again.idempotency_key == "cmdb/web/spec-7/scale"
    assert first.request_id == again.request_id
    assert next_revision.idempotency_key == "cmdb/web/spec-8/scale"
    assert next_revision.request_id != first.request_id


def report(count: int, minutes: int, sequence: int, version: str = "2.0.0") -> InstanceSetReport:
    return InstanceSetReport(
        app_id="web",
        position=Watermark(event_time=T0 + timedelta(minutes=minutes), sequence=sequence),
        instances=tuple(instances(count, version=version)),
    )


def test_a_newer_instance_set_replaces_the_current_one_and_says_what_changed() -> None:
    current = instances(3, version="1.0.0")

    result = apply_instance_set(current, Watermark(event_time=T0, sequence=1), report(2, 5, 2))

    assert isinstance(result, InstanceSetApplied)
    assert [i.version for i in result.instances] == ["2.0.0", "2.0.0"]
    assert result.updated == ("web-0", "web-1")
    assert result.removed == ("web-2",)
    assert result.created == ()
    assert result.watermark == Watermark(event_time=T0 + timedelta(minutes=5), sequence=2)


def test_the_first_instance_set_is_applied_when_there_is_no_watermark() -> None:
    result = apply_instance_set([], None, report(2, 0, 0))

    assert isinstance(result, InstanceSetApplied)
    assert result.created == ("web-0", "web-1")


def test_a_replayed_instance_set_is_stale_and_ignored() -> None:
    event = report(2, 5, 2)
    first = apply_instance_set([], None, event)
    assert isinstance(first, InstanceSetApplied)

    again = apply_instance_set(first.instances, first.watermark, event)

    assert isinstance(again, StaleInstanceSet)
    assert "is not newer than the applied" in again.reason


def test_an_older_instance_set_never_overwrites_newer_state() -> None:
    newer = Watermark(event_time=T0 + timedelta(minutes=10), sequence=4)

    result = apply_instance_set(instances(4), newer, report(1, 5, 9))

    assert isinstance(result, StaleInstanceSet)


def test_the_sequence_orders_instance_sets_reported_at_the_same_time() -> None:
    same_time = Watermark(event_time=T0, sequence=3)

    assert isinstance(apply_instance_set([], same_time, report(1, 0, 4)), InstanceSetApplied)
    assert isinstance(apply_instance_set([], same_time, report(1, 0, 2)), StaleInstanceSet)


def test_an_instance_set_naming_another_application_is_refused() -> None:
    bad = InstanceSetReport(
        app_id="web",
        position=Watermark(event_time=T0, sequence=1),
        instances=tuple(instances(1, app="api")),
    )

    with pytest.raises(ValueError, match="api-0 do not belong to web"):
        apply_instance_set([], None, bad)


def test_an_instance_set_listing_an_instance_twice_is_refused() -> None:
    twice = InstanceSetReport(
        app_id="web",
        position=Watermark(event_time=T0, sequence=1),
        instances=tuple(instances(1) * 2),
    )

    with pytest.raises(ValueError, match="twice"):
        apply_instance_set([], None, twice)


def test_a_sequence_far_beyond_the_applied_one_is_refused_and_changes_nothing() -> None:
    applied = Watermark(event_time=T0, sequence=3)

    with pytest.raises(ImplausibleSequenceError, match="sequence 1000000000 is 999999997 past"):
        apply_instance_set(instances(2), applied, report(1, 0, 1_000_000_000), max_gap=100)
    assert isinstance(
        apply_instance_set(instances(2), applied, report(1, 0, 103), max_gap=100),
        InstanceSetApplied,
    )
    with pytest.raises(ImplausibleSequenceError):
        apply_instance_set(instances(2), applied, report(1, 0, 104), max_gap=100)


def test_the_first_sequence_of_an_application_counts_from_zero() -> None:
    assert isinstance(
        apply_instance_set([], None, report(1, 0, 100), max_gap=100), InstanceSetApplied
    )
    with pytest.raises(ImplausibleSequenceError, match="past the applied 0"):
        apply_instance_set([], None, report(1, 0, 101), max_gap=100)
