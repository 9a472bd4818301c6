"""One valid example payload per event type: for docs, the catalogue and tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ooda.events.contracts import (
    AlertRaised,
    ChangeProgressed,
    ChangeRequested,
    ChangeTarget,
    CmdbChanged,
    DeployDone,
    Forecast,
    InstanceRef,
    ItemChange,
    MetricObserved,
    MetricValues,
    Payload,
    ScaleDecided,
)

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def example_payloads(app: str = "web") -> list[Payload]:
    """A realistic payload of every event type, about application `app`."""
    return [
        MetricObserved(
            app=app,
            window_start=T0,
            window_end=T0 + timedelta(seconds=5),
            values=MetricValues(
                request_rate=412.5,
                error_rate=0.002,
                latency_p50_ms=11.0,
                latency_p95_ms=38.0,
                latency_p99_ms=71.0,
                cpu_utilisation=0.64,
                in_flight=7,
                ready_instances=4,
                load_per_instance=103.1,
            ),
            instance_count=4,
            staleness_s=1.2,
        ),
        ScaleDecided(
            app=app,
            decision_id="dec-1",
            policy="predictive",
            current_replicas=4,
            desired_replicas=6,
            forecast=Forecast(horizon_s=120, value=590.0, quantile=0.9),
            capacity_per_instance=110.0,
            reason="forecast p90 590 rps at +120s needs 6 at 0.9",
            inputs={"request_rate": 412.5},
        ),
        ChangeRequested(
            app=app,
            request_id="elastic:dec-1",
            kind="scale",
            target=ChangeTarget(replicas=6),
            requested_by="service:elastic",
            cause="dec-1",
            reason="scale-decided within budget",
        ),
        DeployDone(
            app=app,
            change_id="chg-1",
            request_id="elastic:dec-1",
            kind="scale",
            outcome="succeeded",
            version="1.4.2",
            replicas=1,
            sequence=7,
            instances=[
                InstanceRef(
                    id="web-a1",
                    version="1.4.2",
                    host="host-a1",
                    zone="zone-a",
                    endpoint="http://127.0.0.1:9101",
                    started_at=T0,
                )
            ],
            started_at=T0,
            finished_at=T0 + timedelta(seconds=9),
        ),
        CmdbChanged(
            app=app,
            change_set_id="cs-1",
            actor="alice",
            cause="chg-1",
            items=[ItemChange(type="instance", id="web-a1", op="create")],
        ),
        ChangeProgressed(app=app, change_id="chg-1", state="running", batch=1, batches=3),
        AlertRaised(
            app=app,
            alert_id="al-1",
            rule="error-budget-burn",
            state="firing",
            severity="critical",
            value=14.4,
            threshold=14.4,
            summary="burning 14x budget",
        ),
    ]
