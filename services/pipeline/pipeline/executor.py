"""The executor: admits, plans and runs each application's changes, one active change at a time.

Crash safety: every transition commits before its effect starts (a batch is marked started, an
instance row is written before its process is spawned), and every effect is idempotent by id
(a batch re-run adopts instances that already run and skips stops already done). After a restart
the executor re-adopts running processes, stops orphans, and resumes the batch that was in flight;
batches recorded as finished are never run again.

Liveness: about every second, the executor checks the managed instances of every application
without an unfinished change (`watch`): an instance whose process died (or whose port refuses
connections) for the grace period (`liveness_grace_s`, which also lets the monitor record the
outage before the instance leaves the CMDB) is marked stopped, and a healing scale change to the
application's desired count is requested, placed away from the zones that lost all of the
application's instances (`pipeline.liveness`). It runs the normal flow, so its `deploy-done`
carries the complete instance set without the dead instances.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ooda import telemetry
from ooda.outbox import Outbox
from pipeline import metrics
from pipeline.artifacts import ArtifactError, ArtifactStore
from pipeline.cmdb import AppSpec, Cmdb, UnknownApplication
from pipeline.domain import (
    FINISHED_STATES,
    Batch,
    BatchSpec,
    Change,
    ChangeKind,
    ChangeState,
    Host,
    Instance,
    Plan,
    PlanningError,
    Progress,
    Resources,
    StartInstance,
    blocked_by_pin,
    next_to_start,
    plan_change,
    plan_rollback,
    supersede_scale_requests,
)
from pipeline.driver import LOCALHOST, Driver, DriverError, InstanceSpec, Running
from pipeline.gates import GateInstance, MetricGate, wait_ready
from pipeline.handlers import (
    RequestChange,
    app_windows,
    artifact_map,
    as_domain,
    change_row,
    current_freeze,
    current_pin,
    ensure_app_state,
    live_instances,
    load_change,
    load_queue,
    remember_artifact,
    request_change,
    save_change,
)
from pipeline.liveness import Member, heal
from pipeline.metrics import BATCH_SECONDS
from pipeline.store import app_state, changes, instances

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


def current(change: Change) -> tuple[Plan | None, Progress]:
    """The plan the change is working through (its rollback once one began) and its progress."""
    if change.state is ChangeState.ROLLING_BACK or change.rollback_plan is not None:
        return change.rollback_plan, change.rollback_progress
    return change.rollout_plan, change.rollout_progress


class Executor:
    """Drives every application's queue of changes through plans and batches."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        outbox: Outbox,
        cmdb: Cmdb,
        driver: Driver,
        artifacts: ArtifactStore,
        *,
        gates: Sequence[MetricGate] = (),
        clock: Clock = utcnow,
        poll_s: float = 0.5,
        health_timeout_s: float = 30.0,
        liveness_s: float = 1.0,
        liveness_grace_s: float = 5.0,
        probe_concurrency: int = 32,
    ) -> None:
        self.sessions = sessions
        self.outbox = outbox
        self.cmdb = cmdb
        self.driver = driver
        self.artifacts = artifacts
        self.gates = list(gates)
        self.clock = clock
        self.poll_s = poll_s
        self.health_timeout_s = health_timeout_s
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._specs: dict[str, AppSpec] = {}
        # At most `probe_concurrency` probes (readiness, liveness) are in flight, each a connection.
        self._probes = asyncio.Semaphore(probe_concurrency)
        self._wake = asyncio.Event()
        self.liveness_s = liveness_s
        self._watched_at = 0.0
        self.liveness_grace_s = liveness_grace_s
        self._down_since: dict[str, float] = {}  # instance id -> first seen down (monotonic)

    def wake(self) -> None:
        """Look at the queues now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Re-adopt instances, then drive changes until cancelled; errors are logged, not fatal."""
        try:
            while True:
                try:
                    await self.reconcile()
                    break
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("re-adopting instances failed; retrying")
                    await asyncio.sleep(2.0)
            while True:
                try:
                    await self.tick()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("executor tick failed; going on")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_s)
                self._wake.clear()
        finally:
            for task in self._tasks.values():
                task.cancel()
            for task in self._tasks.values():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def reconcile(self) -> None:
        """Adopt running instances the store knows, stop orphans, mark dead instances unhealthy."""
        running = {r.id: r for r in await asyncio.to_thread(self.driver.running)}
        orphans: list[str] = []
        async with self.sessions() as session, session.begin():
            rows = await session.execute(
                select(instances).where(instances.c.status != "stopped").with_for_update()
            )
            known = {row.id: row for row in rows}
            moved: list[Running] = []
            for instance_id, proc in running.items():
                row = known.get(instance_id)
                if row is None:
                    orphans.append(instance_id)
                elif (row.pid, row.port) != (proc.pid, proc.port):
                    moved.append(proc)
            if moved:
                await self._record_processes(session, moved)
            dead = [
                instance_id
                for instance_id, row in known.items()
                if instance_id not in running and row.status != "unhealthy"
            ]
            if dead:
                await session.execute(
                    update(instances).where(instances.c.id.in_(dead)).values(status="unhealthy")
                )
        for instance_id in orphans:
            log.warning("stopping orphan instance %s", instance_id)
            await asyncio.to_thread(self.driver.stop, instance_id)
        if running:
            log.info("re-adopted %d running instance(s)", len(running) - len(orphans))

    async def tick(self) -> None:
        """Start a driver task for every application with unfinished changes and none running."""
        async with self.sessions() as session:
            apps = (
                await session.execute(
                    select(changes.c.app)
                    .where(changes.c.state.not_in([s.value for s in FINISHED_STATES]))
                    .distinct()
                )
            ).scalars()
            for app in apps:
                task = self._tasks.get(app)
                if task is None or task.done():
                    self._tasks[app] = asyncio.create_task(self._drive(app))
        if time.monotonic() - self._watched_at >= self.liveness_s:
            self._watched_at = time.monotonic()
            try:
                await self.watch()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("watching the instances' liveness failed; going on")

    async def watch(self) -> None:
        """Heal every application without an unfinished change whose instances died."""
        async with self.sessions() as session:
            busy = set(
                (
                    await session.execute(
                        select(changes.c.app)
                        .where(changes.c.state.not_in([s.value for s in FINISHED_STATES]))
                        .distinct()
                    )
                ).scalars()
            )
            busy |= {app for app, task in self._tasks.items() if not task.done()}
            watched = [
                dict(row._mapping)
                for row in await session.execute(
                    select(instances).where(
                        instances.c.status != "stopped", instances.c.app.not_in(busy)
                    )
                )
            ]
        ids = [row["id"] for row in watched]
        alive = await asyncio.to_thread(lambda: {i: self._alive(i) for i in ids})
        # The ports of the live ones are tried side by side, as many at once as readiness probes.
        live = [row for row in watched if alive[row["id"]]]
        answers = await asyncio.gather(*(self._port_answers(row) for row in live))
        answering = {row["id"]: answer for row, answer in zip(live, answers, strict=True)}
        now = time.monotonic()
        down: dict[str, list[dict[str, Any]]] = {}
        for row in watched:
            if not answering.get(row["id"], False):
                down.setdefault(row["app"], []).append(row)
        since = self._down_since
        self._down_since = {
            row["id"]: since.get(row["id"], now) for rows in down.values() for row in rows
        }
        for app, gone in down.items():
            # Once one of them is down for the grace period, all the application's instances
            # that are down go together, so that a zone losing all of them is seen as such.
            if any(now - self._down_since[row["id"]] >= self.liveness_grace_s for row in gone):
                try:
                    await self._heal(app, gone)
                except Exception:
                    # One application that cannot be healed now never keeps the others waiting;
                    # the next watch tries it again.
                    log.exception("healing %s failed; retrying at the next watch", app)
                    metrics.HEAL_FAILURES.labels(app).inc()

    def _alive(self, instance_id: str) -> bool:
        """Whether the instance's process runs; when that cannot be told, it counts as alive
        (its port is still probed), so one unreadable record neither stops the watch nor
        replaces a healthy instance."""
        try:
            return self.driver.alive(instance_id)
        except Exception:
            log.exception("cannot tell whether %s is alive", instance_id)
            metrics.PROBE_FAILURES.inc()
            return True

    async def _port_answers(self, row: dict[str, Any]) -> bool:
        """False when a ready instance's port refuses connections (busy or slow is not dead)."""
        if row["status"] != "running" or not row["port"]:
            return True
        try:
            async with self._probes:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(row["address"] or LOCALHOST, row["port"]), 2.0
                )
        except ConnectionRefusedError:
            return False
        except (OSError, TimeoutError):
            return True
        except Exception:
            log.exception("probing %s's port failed", row["id"])
            metrics.PROBE_FAILURES.inc()
            return True
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    async def _heal(self, app: str, gone: list[dict[str, Any]]) -> None:
        """Mark the dead instances stopped and request the change that replaces them."""
        for row in gone:
            if await asyncio.to_thread(self.driver.alive, row["id"]):
                log.warning("instance %s of %s stopped answering; stopping it", row["id"], app)
                await asyncio.to_thread(self.driver.stop, row["id"])
        try:
            zones = {host.zone for host in await self.cmdb.hosts()}
        except Exception as error:
            log.warning("cannot list the hosts (%s); healing %s among its own zones", error, app)
            zones = set()
        now = self.clock()
        async with self.sessions() as session, session.begin():
            await ensure_app_state(session, app)
            state = (
                await session.execute(
                    select(app_state.c.version, app_state.c.replicas)
                    .where(app_state.c.app == app)
                    .with_for_update()
                )
            ).one()
            unfinished = (
                await session.execute(
                    select(changes.c.id)
                    .where(
                        changes.c.app == app,
                        changes.c.state.not_in([s.value for s in FINISHED_STATES]),
                    )
                    .limit(1)
                )
            ).first()
            if unfinished is not None:
                return  # a change started meanwhile; it owns the instances now
            marked = (
                await session.execute(
                    update(instances)
                    .where(
                        instances.c.id.in_([row["id"] for row in gone]),
                        instances.c.status != "stopped",
                    )
                    .values(status="stopped", stopped_at=now)
                    .returning(instances.c.id, instances.c.version, instances.c.zone)
                )
            ).all()
            if not marked:
                return
            dead = [Member(r.id, r.version, r.zone) for r in marked]
            survivors = [
                Member(r["id"], r["version"], r["zone"]) for r in await live_instances(session, app)
            ]
            desired = state.replicas if state.version is not None else len(dead) + len(survivors)
            change = heal(app, dead, survivors, desired, zones)
            log.warning("%s: %s; requesting %s", app, change.reason, change.request_id)
            with telemetry.tracer.start_as_current_span(f"pipeline heal {app}"):
                await request_change(
                    session,
                    self.outbox,
                    RequestChange(
                        app=app,
                        kind=change.kind,
                        request_id=change.request_id,
                        target=change.target,
                        batch=BatchSpec(percent=100),
                        actor=change.actor,
                        cause=change.cause,
                        cause_text=change.cause_text,
                        reason=change.reason,
                    ),
                    now,
                )
        for row in gone:
            self._down_since.pop(row["id"], None)
        self.wake()

    async def _drive(self, app: str) -> None:
        try:
            while await self.step(app):
                pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("driving the changes of %s failed; retrying at the next tick", app)

    async def step(self, app: str) -> bool:
        """Take one step of the application's queue; False when there is nothing to do now."""
        now = self.clock()
        async with self.sessions() as session, session.begin():
            queue = await load_queue(session, app)
            active = next((change for change in queue if change.is_active), None)
            if active is None:
                return await self._admit(session, app, queue, now)
            change = active
            plan, progress = current(change)
            if change.state is ChangeState.PAUSED and not progress.in_flight:
                if not change.due_to_resume(now):
                    return False
                change.resume(now)
                await save_change(session, self.outbox, change, now)
                return True
            if change.state is ChangeState.ROLLING_BACK and change.rollback_plan is None:
                await self._plan_rollback(session, change, now)
                return True
            if plan is None:
                return False
            if not progress.in_flight:
                change.start_batch(now)
                await save_change(session, self.outbox, change, now)
            number, rollback = progress.started, plan.rollback
            batch = plan.batches[number - 1]
            versions = await artifact_map(session, app)
        # Metric gates judge releases only: a rollback is the remedy (the metrics it would be
        # judged by include the version it removes), and a scale change often answers the very
        # load that raises the error rate or the latency.
        gated = change.kind is ChangeKind.DEPLOY and not rollback
        failure = await self._run_batch(change, batch, versions, gated=gated)
        now = self.clock()
        async with self.sessions() as session, session.begin():
            change = await load_change(session, change.id)
            plan, progress = current(change)
            if (
                plan is not None
                and progress.in_flight
                and progress.started == number
                and plan.rollback == rollback
            ):
                if failure is None:
                    change.batch_succeeded(now)
                else:
                    log.warning("change %s batch %d failed: %s", change.id, number, failure)
                    change.batch_failed(failure, now)
                await save_change(session, self.outbox, change, now)
        return True

    async def _admit(
        self, session: AsyncSession, app: str, queue: list[Change], now: datetime
    ) -> bool:
        dropped = supersede_scale_requests(queue, now)
        for change in dropped:
            await save_change(session, self.outbox, change, now)
        waiting = [change for change in queue if not change.is_finished]
        if not waiting:
            return False
        decision = next_to_start(
            waiting, await current_freeze(session), await app_windows(session, app), now
        )
        if decision.start is None:
            held = decision.held
            if held is not None and held.reason != decision.reason:
                held.hold(decision.reason, now)
                await save_change(session, self.outbox, held, now)
            return bool(dropped)
        change = decision.start
        why = blocked_by_pin(await current_pin(session, app), change)
        if why is not None:
            change.abort(why, now)
        else:
            await self._plan(session, change, now)
        await save_change(session, self.outbox, change, now)
        return True

    async def _spec(self, app: str) -> AppSpec:
        spec = await self.cmdb.spec(app)
        self._specs[app] = spec
        return spec

    async def _plan(self, session: AsyncSession, change: Change, now: datetime) -> None:
        app = change.application
        row = await change_row(session, change.id)
        assert row is not None
        try:
            spec = await self._spec(app)
            hosts = await self.cmdb.hosts()
            live = [as_domain(r) for r in await live_instances(session, app)]
            if change.kind in (ChangeKind.DEPLOY, ChangeKind.ROLLBACK):
                await self._resolve_artifact(session, change, row["artifact"], spec)
            if change.target.replicas is None and not live and spec.replicas:
                change.target = change.target.model_copy(update={"replicas": spec.replicas})
            batch_spec = BatchSpec.model_validate(row["batch"])
            change.plan(plan_change(change, live, hosts, spec.resources, batch_spec), now)
        except (PlanningError, UnknownApplication, ArtifactError) as error:
            change.planning_failed(str(error), now)

    async def _resolve_artifact(
        self, session: AsyncSession, change: Change, claimed: str | None, spec: AppSpec
    ) -> None:
        version = change.target.version
        assert version is not None
        known = await artifact_map(session, change.application)
        sha = claimed or known.get(version)
        if sha is None and spec.version == version:
            sha = spec.artifact
        if sha is None:
            raise PlanningError(
                f"no artifact is known for version {version} of {change.application}"
            )
        sha = sha.lower().removeprefix("sha256:")
        await asyncio.to_thread(self.artifacts.verify, self.artifacts.path(sha), sha)
        await remember_artifact(session, change.application, version, sha)

    async def _plan_rollback(self, session: AsyncSession, change: Change, now: datetime) -> None:
        app = change.application
        try:
            spec = self._specs.get(app) or await self._spec(app)
            hosts = await self.cmdb.hosts()
            live = [as_domain(r) for r in await live_instances(session, app)]
            change.plan(plan_rollback(change, live, hosts, spec.resources), now)
        except (PlanningError, UnknownApplication) as error:
            change.planning_failed(f"cannot plan the rollback: {error}", now)
        except httpx.HTTPError:
            # Without the CMDB, roll back in place on the instances' own hosts.
            live = [as_domain(r) for r in await live_instances(session, app)]
            hosts_in_use = _hosts_of(live)
            change.plan(
                plan_rollback(change, live, hosts_in_use, Resources(cpu=0, memory_mb=0)), now
            )
        await save_change(session, self.outbox, change, now)

    async def _run_batch(
        self, change: Change, batch: Batch, versions: dict[str, str], *, gated: bool = True
    ) -> str | None:
        """Apply one batch; None when every new instance is healthy, else why the batch failed.

        The batch's instance rows are written in one transaction before the driver starts any of
        them, and their processes (pid, port) in one transaction after; a crash in between
        leaves rows that the restart's `reconcile` completes from the driver's own records.
        """
        app = change.application
        spec = self._specs.get(app)
        if spec is None:
            with contextlib.suppress(Exception):
                spec = await self._spec(app)
        began = time.perf_counter()
        await self._stop_all(app, [stop.instance_id for stop in batch.stop_first])
        for start in batch.start:
            if start.version not in versions:
                return f"no artifact is known for version {start.version}"
        t0 = time.perf_counter()
        try:
            paths = await asyncio.to_thread(self._place, batch.start, versions)
        except ArtifactError as error:
            return str(error)
        t1 = time.perf_counter()
        await self._record_starting(change, batch.start, versions)
        env = {}
        if spec is not None and spec.capacity_rps:
            env["WORKLOAD_CAPACITY_RPS"] = f"{spec.capacity_rps:g}"
        specs = [
            InstanceSpec(
                id=start.instance_id,
                app=app,
                version=start.version,
                host=start.host,
                zone=start.zone,
                artifact=paths[(versions[start.version], start.host)],
                env=env,
            )
            for start in batch.start
        ]
        processes: list[Running] = []
        try:
            await asyncio.to_thread(self._start_all, specs, processes)
        except DriverError as error:
            # A host the driver cannot use fails the batch (its rollback stops what started).
            return f"cannot start instance {specs[len(processes)].id}: {error}"
        finally:
            # Even when a start failed part-way, keep what did start (its re-run adopts them).
            if processes:
                async with self.sessions() as session, session.begin():
                    await self._record_processes(session, processes)
        started = list(zip(batch.start, processes, strict=True))
        BATCH_SECONDS.labels(phase="artifact").observe(t1 - t0)
        BATCH_SECONDS.labels(phase="start").observe(time.perf_counter() - t1)
        t2 = time.perf_counter()
        path = spec.health_path if spec else "/readyz"
        timeout = (spec.health_timeout_s if spec else None) or self.health_timeout_s
        verdicts = await asyncio.gather(
            *(
                wait_ready(
                    running.endpoint + path,
                    timeout,
                    functools.partial(self.driver.alive, start.instance_id),
                    limit=self._probes,
                )
                for start, running in started
            )
        )
        BATCH_SECONDS.labels(phase="health").observe(time.perf_counter() - t2)
        failures = []
        ready_at = self.clock()
        outcomes = []
        for (start, _), verdict in zip(started, verdicts, strict=True):
            ok = verdict is None
            outcomes.append(
                {
                    "instance_id": start.instance_id,
                    "new_status": "running" if ok else "unhealthy",
                    "new_ready_at": ready_at if ok else None,
                }
            )
            if not ok:
                detail = verdict
                if not self.driver.alive(start.instance_id):
                    detail = self.driver.describe_exit(start.instance_id)
                failures.append(f"instance {start.instance_id} {detail}")
        if outcomes:
            async with self.sessions() as session, session.begin():
                await session.execute(_MARK_READY, outcomes)
        if failures:
            return "; ".join(failures)
        gate_view = [
            GateInstance(s.instance_id, app, s.version, s.zone, r.endpoint) for s, r in started
        ]
        for gate in self.gates if gated else ():
            reason = await gate.check(app, gate_view)
            if reason is not None:
                return f"metric gate: {reason}"
        await self._stop_all(app, [stop.instance_id for stop in batch.stop])
        BATCH_SECONDS.labels(phase="total").observe(time.perf_counter() - began)
        return None

    def _place(
        self, starts: Sequence[StartInstance], versions: dict[str, str]
    ) -> dict[tuple[str, str], Path]:
        """Each artifact the batch needs in each host's cache, once per (artifact, host).

        A driver that places artifacts on its hosts itself (`places_artifacts`, the ssh driver)
        gets the store's verified copy instead.
        """
        paths: dict[tuple[str, str], Path] = {}
        itself = getattr(self.driver, "places_artifacts", False)
        for start in starts:
            key = (versions[start.version], start.host)
            if key in paths:
                continue
            if itself:
                path = self.artifacts.path(key[0])
                self.artifacts.verify(path, key[0])
                paths[key] = path
            else:
                paths[key] = self.artifacts.on_host(*key).path
        return paths

    def _start_all(self, specs: Sequence[InstanceSpec], into: list[Running]) -> None:
        """Start the instances one after the other, appending each process as it starts."""
        for spec in specs:
            into.append(self.driver.start(spec))

    async def _record_starting(
        self, change: Change, starts: Sequence[StartInstance], versions: dict[str, str]
    ) -> None:
        """Write the rows of the instances about to start, in one transaction."""
        rows = [
            {
                "id": start.instance_id,
                "app": change.application,
                "change_id": change.id,
                "version": start.version,
                "artifact": versions[start.version],
                "host": start.host,
                "zone": start.zone,
                "status": "starting",
            }
            for start in starts
        ]
        if not rows:
            return
        async with self.sessions() as session, session.begin():
            for chunk in range(0, len(rows), _ROWS_PER_INSERT):
                statement = insert(instances).values(rows[chunk : chunk + _ROWS_PER_INSERT])
                await session.execute(
                    statement.on_conflict_do_update(
                        index_elements=["id"],
                        set_={name: statement.excluded[name] for name in rows[0] if name != "id"},
                    )
                )

    @staticmethod
    async def _record_processes(session: AsyncSession, processes: Sequence[Running]) -> None:
        await session.execute(
            _RECORD_PROCESS,
            [
                {
                    "instance_id": proc.id,
                    "new_pid": proc.pid,
                    "new_port": proc.port,
                    "new_address": proc.address,
                    "new_started_at": datetime.fromisoformat(proc.started_at),
                }
                for proc in processes
            ],
        )

    def _stop_each(self, ids: Sequence[str]) -> None:
        for instance_id in ids:
            self.driver.stop(instance_id)

    async def _stop_all(self, app: str, ids: Sequence[str]) -> None:
        """Stop the instances one after the other, mark them stopped in one transaction, and
        tell the metric gates (which stop observing them)."""
        if not ids:
            return
        t0 = time.perf_counter()
        await asyncio.to_thread(self._stop_each, ids)
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(instances)
                .where(instances.c.id.in_(ids), instances.c.status != "stopped")
                .values(status="stopped", stopped_at=self.clock())
            )
        BATCH_SECONDS.labels(phase="stop").observe(time.perf_counter() - t0)
        for gate in self.gates:
            await gate.forget(app, ids)


_ROWS_PER_INSERT = 1000  # 8 parameters a row, well under PostgreSQL's 32,767 per statement

_RECORD_PROCESS = (
    update(instances)
    .where(instances.c.id == bindparam("instance_id"))
    .values(
        pid=bindparam("new_pid"),
        port=bindparam("new_port"),
        address=bindparam("new_address"),
        started_at=bindparam("new_started_at"),
    )
)

_MARK_READY = (
    update(instances)
    .where(instances.c.id == bindparam("instance_id"))
    .values(status=bindparam("new_status"), ready_at=bindparam("new_ready_at"))
)


def _hosts_of(live: Sequence[Instance]) -> list[Host]:
    return [
        Host(id=host, zone=zone, pool="unknown", free=Resources(cpu=0, memory_mb=0))
        for host, zone in sorted({(i.host, i.zone) for i in live})
    ]
