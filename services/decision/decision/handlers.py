"""Use cases of the decision center, one async function each."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from decision.cmdb import SpecHints, SpecSource, SpecsUnavailable
from decision.engine import AppModel, Engine, decision_id
from decision.store import app_state, decisions, load_history
from ooda.events import DeployDone, Event, MetricObserved, ScaleDecided
from ooda.events.contracts import Forecast
from ooda.outbox import Outbox
from ooda.telemetry import context_from, trace_id_of, tracer

log = logging.getLogger(__name__)

REPUBLISH_WINDOWS = 3  # how often an unmet decision is repeated
DELAY_SMOOTHING = 0.3  # weight of the newest deploy-done timing in the learned delay


async def remember_observations(session: AsyncSession, events: list[Event]) -> None:
    """Add observed windows to each application's load history (a window counts once)."""
    rows = []
    for event in events:
        obs = event.data
        assert isinstance(obs, MetricObserved)
        rows.append(
            {
                "app": obs.app,
                "window_start": obs.window_start,
                "window_end": obs.window_end,
                "request_rate": obs.values.request_rate,
                "values": obs.values.model_dump(mode="json"),
                "instance_count": obs.instance_count,
                "event_id": event.id,
                "trace_id": trace_id_of(event.traceparent),
            }
        )
    await session.execute(
        insert(load_history).on_conflict_do_nothing(constraint="uq_load_history_app_window_end"),
        rows,
    )


HINTS_REFRESH_S = 30.0
"""How often the spec is asked for again (an owner may change the policy or its bounds)."""
HINTS_RETRY_S = 5.0
"""How soon to ask again when the CMDB could not say (the model runs on defaults meanwhile)."""
HINTS_TICK_S = 1.0
"""How often the refresher looks for models whose spec is due to be asked for again."""
HINTS_IN_FLIGHT = 8
"""Spec requests the refresher has open at once."""


async def _ask_hints(specs: SpecSource, app: str) -> tuple[SpecHints | None, bool]:
    """The app's spec hints and whether the CMDB said (False: unavailable, ask again)."""
    try:
        return await specs.hints(app), True
    except SpecsUnavailable as exc:
        log.warning("spec of %s unknown, deciding on defaults until the CMDB answers: %s", app, exc)
        return None, False


async def refresh_hints(engine: Engine, specs: SpecSource) -> None:
    """Ask the CMDB again for the spec of every model that is due, outside any transaction.

    Runs for the service's lifetime. Specs that changed (or became known) wait in
    `engine.fresh_hints` for the consumer, which rebuilds the model at its next window; so a slow
    or unreachable CMDB never holds the consumer or a database transaction up (only a model's
    first build asks it directly, so that its first decision follows the declared spec).
    """
    limit = asyncio.Semaphore(HINTS_IN_FLIGHT)

    async def refresh(model: AppModel) -> None:
        async with limit:
            hints, known = await _ask_hints(specs, model.app)
        model.hints_checked = time.monotonic()
        if known and (not model.hints_known or hints != model.hints):
            engine.fresh_hints[model.app] = hints

    while True:
        now = time.monotonic()
        due = [
            model
            for model in list(engine.models.values())
            if now - model.hints_checked
            >= (HINTS_REFRESH_S if model.hints_known else HINTS_RETRY_S)
        ]
        # A spec it cannot read fails that model alone (it is asked again at the next tick).
        outcomes = await asyncio.gather(*(refresh(model) for model in due), return_exceptions=True)
        for model, outcome in zip(due, outcomes, strict=True):
            if isinstance(outcome, Exception):
                log.error("refreshing %s's spec hints failed: %r", model.app, outcome)
        await asyncio.sleep(HINTS_TICK_S)


async def _current_model(
    session: AsyncSession, engine: Engine, specs: SpecSource, app: str, before: datetime
) -> AppModel:
    """The app's model; rebuilt from its history when the refresher found its spec changed."""
    model = engine.models.get(app)
    if model is not None and app in engine.fresh_hints:
        hints = engine.fresh_hints.pop(app)
        if not model.hints_known or hints != model.hints:
            log.info("spec hints of %s are now %s: rebuilding its model", app, hints)
            engine.forget({app})
            return await _warm_model(session, engine, specs, app, before, (hints, True))
    return model or await _warm_model(session, engine, specs, app, before)


async def _warm_model(
    session: AsyncSession,
    engine: Engine,
    specs: SpecSource,
    app: str,
    before: datetime,
    known_hints: tuple[SpecHints | None, bool] | None = None,
) -> AppModel:
    """Rebuild an application's model by replaying its stored history before `before`."""
    state = (await session.execute(select(app_state).where(app_state.c.app == app))).one_or_none()
    hints, known = known_hints or await _ask_hints(specs, app)
    model = engine.new_model(app, hints, state.delay_s if state else None)
    model.hints, model.hints_known, model.hints_checked = hints, known, time.monotonic()
    history = await session.execute(
        select(load_history)
        .where(load_history.c.app == app, load_history.c.window_end < before)
        .order_by(load_history.c.window_end)
    )
    for row in history:
        model.step(
            MetricObserved(
                app=app,
                window_start=row.window_start,
                window_end=row.window_end,
                values=row.values,
                instance_count=row.instance_count,
            )
        )
    if state is not None and state.desired_replicas is not None:
        model.desired = state.desired_replicas
    return model


async def observe_and_decide(
    session: AsyncSession,
    events: list[Event],
    *,
    engine: Engine,
    specs: SpecSource,
    outbox: Outbox,
    fresh_windows: int,
    now: datetime | None = None,
) -> None:
    """Learn each observed window, decide the replicas after it, and publish fresh changes."""
    await remember_observations(session, events)
    by_app: dict[str, list[Event]] = {}
    for event in events:
        by_app.setdefault(event.subject, []).append(event)
    # Models advance in memory before the commit: if the transaction rolls back, forget them so
    # they are rebuilt from what the database really holds.
    touched = set(by_app)
    sa_event.listen(
        session.sync_session, "after_rollback", lambda _s: engine.forget(touched), once=True
    )
    now = now or datetime.now(UTC)
    for app, app_events in by_app.items():
        app_events.sort(key=lambda e: e.data.window_end)  # type: ignore[attr-defined]
        first = app_events[0].data
        assert isinstance(first, MetricObserved)
        model = await _current_model(session, engine, specs, app, first.window_end)
        for event in app_events:
            await _decide(session, model, event, outbox, fresh_windows, now)


async def _decide(
    session: AsyncSession,
    model: AppModel,
    event: Event,
    outbox: Outbox,
    fresh_windows: int,
    now: datetime,
) -> None:
    obs = event.data
    assert isinstance(obs, MetricObserved)
    previous = model.desired
    result = model.step(obs)
    if result is None:
        return
    decision, per_instance = result
    step = obs.window_end - obs.window_start
    ready = obs.values.ready_instances
    ready = obs.instance_count if ready is None else ready
    baseline = previous if previous is not None else ready
    fresh = obs.window_end >= now - fresh_windows * max(step, timedelta(seconds=1))
    # Publish a change of mind; and while reality still differs from the decision (elastic may
    # have held it for a cooldown or a step limit), say it again every few windows.
    stale = (
        model.last_published is None
        or obs.window_end - model.last_published >= REPUBLISH_WINDOWS * step
    )
    publish = fresh and (decision.replicas != baseline or (decision.replicas != ready and stale))
    if publish:
        model.last_published = obs.window_end
    explanation = decision.explanation()
    forecast = explanation["forecast"]
    did = decision_id(obs.app, obs.window_end)
    event_id = None
    if publish:
        payload = ScaleDecided(
            app=obs.app,
            decision_id=did,
            policy=decision.policy,
            current_replicas=ready,
            desired_replicas=decision.replicas,
            forecast=Forecast(
                horizon_s=forecast["horizon_s"],
                value=forecast["value"],
                quantile=forecast["quantile"],
            )
            if forecast
            else None,
            capacity_per_instance=per_instance if per_instance > 0 else None,
            reason=decision.reason,
            inputs={
                k: v
                for k, v in explanation["inputs"].items()
                if not isinstance(v, float) or math.isfinite(v)
            },
        )
        # A batch handler runs under one span for the whole batch; publish this decision inside
        # the trace of the observation that caused it, so the loop stays one trace.
        with tracer.start_as_current_span(
            f"decide {obs.app}", context=context_from(event.traceparent, event.tracestate)
        ):
            event_id = outbox.add(session, payload).id
    await session.execute(
        insert(decisions)
        .values(
            decision_id=did,
            app=obs.app,
            window_end=obs.window_end,
            policy=decision.policy,
            current_replicas=ready,
            desired_replicas=decision.replicas,
            capacity_per_instance=per_instance,
            forecast=forecast,
            reason=decision.reason[:500],
            inputs={k: v for k, v in explanation["inputs"].items() if _json_safe(v)},
            published=publish,
            event_id=event_id,
        )
        .on_conflict_do_nothing()
    )
    if publish:
        await _save_state(session, obs.app, desired_replicas=decision.replicas)


def _json_safe(value: object) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


async def _save_state(session: AsyncSession, app: str, **values: object) -> None:
    stmt = insert(app_state).values(app=app, **values)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[app_state.c.app], set_={**values, "updated_at": datetime.now(UTC)}
        )
    )


async def learn_from_deploy(session: AsyncSession, event: Event, *, engine: Engine) -> None:
    """Take the replica count a change left and how long it took (the provisioning delay)."""
    done = event.data
    assert isinstance(done, DeployDone)
    state = (
        await session.execute(select(app_state).where(app_state.c.app == done.app))
    ).one_or_none()
    if (
        state is not None
        and state.last_sequence is not None
        and done.sequence <= state.last_sequence
    ):
        return  # an older or replayed change: newer state wins
    began = done.requested_at or done.started_at
    took = max((done.finished_at - began).total_seconds(), 0.0)
    delay = (
        took
        if state is None or state.delay_s is None
        else ((1 - DELAY_SMOOTHING) * state.delay_s + DELAY_SMOOTHING * took)
    )
    if done.kind not in ("scale", "deploy", "migrate") or done.outcome != "succeeded":
        delay = state.delay_s if state is not None else None
    await _save_state(
        session,
        done.app,
        desired_replicas=done.replicas,
        delay_s=delay,
        last_sequence=done.sequence,
    )
    model = engine.models.get(done.app)
    if model is not None:
        model.desired = done.replicas
        if delay:
            model.delay_s = delay
