"""The monitor's background work: discovery, the scrape-aggregate-publish round, retention.

Targets are the CMDB's service discovery plus the instances deployers announced (until they
expire or the CMDB lists them); the CMDB's entry wins for an instance both name.

Windows are aligned to interval boundaries from the Unix epoch: the round at boundary T scrapes
every target and publishes [T - interval, T) for each application. A restarted monitor computes
the same boundaries, and the unique (app, step, window_end) key turns a repeated window into a
no-op, so no window is ever published twice.
"""

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from monitor import metrics
from monitor.domain import (
    AppRollup,
    RetentionPolicy,
    ScrapeResult,
    Snapshot,
    Target,
    Tier,
    aggregate_app,
    align,
    merge_targets,
    plan_retention,
    refuse_unknown_hosts,
    target_host,
)
from monitor.handlers import (
    downsample_tier,
    evaluate_alerts,
    live_announced,
    load_rules,
    publish_rollup,
    pushed_snapshots,
    save_scrape_states,
    sync_targets,
)
from monitor.scraper import Scraper
from monitor.sd import TargetSource
from monitor.store import targets as targets_table
from ooda.service import Runtime

log = logging.getLogger(__name__)


def retention_for(step: timedelta) -> RetentionPolicy:
    """The interval kept 6 h, 12 intervals kept 7 days, 120 intervals kept 90 days."""
    return RetentionPolicy(
        (
            Tier(step, timedelta(hours=6)),
            Tier(step * 12, timedelta(days=7)),
            Tier(step * 120, timedelta(days=90)),
        )
    )


class Monitor:
    """One monitor's live state: its targets, each instance's last snapshot, and its loops."""

    def __init__(
        self,
        source: TargetSource,
        scraper: Scraper,
        interval_s: float,
        sd_refresh_s: float | None = None,
        retention_every_s: float = 60.0,
        cpu_request: float = 1.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.source = source
        self.scraper = scraper
        self.step = timedelta(seconds=interval_s)
        self.sd_refresh_s = sd_refresh_s or interval_s
        self.retention_every_s = retention_every_s
        self.cpu_request = cpu_request
        self.clock = clock
        self.policy = retention_for(self.step)
        self.targets: list[Target] | None = None
        self.sd_targets: list[Target] | None = None
        self.expiry: dict[str, datetime] = {}
        self.sd_failing = False
        self.last: dict[str, Snapshot] = {}
        self.refresh_requested = asyncio.Event()
        self.discovered = asyncio.Event()

    @property
    def step_s(self) -> float:
        """The interval in seconds, which is also the step of published windows."""
        return self.step.total_seconds()

    def start(self, rt: Runtime) -> None:
        """Start the loops as tasks of the runtime (cancelled at shutdown)."""
        rt.tasks.append(asyncio.create_task(self._forever("discovery", self._discover, rt)))
        rt.tasks.append(asyncio.create_task(self._forever("scrape", self._scrape_rounds, rt)))
        rt.tasks.append(asyncio.create_task(self._forever("retention", self._retain, rt)))

    def request_refresh(self) -> None:
        """Re-read service discovery now (a `cmdb-changed` event arrived)."""
        self.refresh_requested.set()

    async def _forever(
        self, name: str, loop: Callable[[Runtime], Awaitable[None]], rt: Runtime
    ) -> None:
        delay = 1.0
        while True:
            try:
                await loop(rt)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("monitor %s loop failed; restarting in %.0fs", name, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _discover(self, rt: Runtime) -> None:
        while True:
            self.refresh_requested.clear()
            await self.refresh(rt)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.refresh_requested.wait(), self.sd_refresh_s)

    async def refresh(self, rt: Runtime) -> None:
        """Read service discovery, add the announced targets, and store the merged target set.

        When service discovery fails, the last known set of the CMDB is kept (read back from
        the database after a restart); announced targets are merged in either way.
        """
        listed: list[str] = []
        try:
            found = await self.source.targets()
        except Exception as exc:
            if not self.sd_failing:
                log.warning("service discovery failed, keeping the last known targets: %s", exc)
            self.sd_failing = True
            if self.sd_targets is None:
                async with rt.sessions() as session:
                    rows = (
                        await session.execute(
                            select(targets_table).where(targets_table.c.source == "sd")
                        )
                    ).all()
                self.sd_targets = [
                    Target(
                        r.app, r.instance_id, r.url, labels=tuple(sorted((r.labels or {}).items()))
                    )
                    for r in rows
                ]
            found = self.sd_targets
        else:
            if self.sd_failing:
                log.info("service discovery answers again")
                self.sd_failing = False
            self.sd_targets = found
            listed = [t.instance_id for t in found]
        async with rt.sessions() as session, session.begin():
            announced = await live_announced(session, self.clock(), listed)
            merged = merge_targets(found, await self._vetted(found, list(announced)))
            changes = await sync_targets(session, merged)
        if changes.added or changes.removed:
            log.info("targets: +%s -%s", changes.added, changes.removed)
        for instance in changes.removed:
            self.last.pop(instance, None)
        gone = {t.app_id for t in self.targets or ()} - {t.app_id for t in merged}
        for app in gone:
            for gauge in (metrics.TARGETS, metrics.TARGETS_UP):
                with contextlib.suppress(KeyError):
                    gauge.remove(app)
        self.expiry = {t.instance_id: at for t, at in announced.items()}
        self.targets = merged
        self.discovered.set()

    async def _vetted(self, found: list[Target], announced: list[Target]) -> list[Target]:
        """The announced targets, those on hosts the CMDB does not know marked refused."""
        known_hosts = getattr(self.source, "known_hosts", None)
        if known_hosts is None or not announced:  # the CMDB's hosts are read only when needed
            return announced
        known = await known_hosts()
        if known is None:
            return announced
        hosts = {host for t in found if (host := target_host(t.url))}
        return refuse_unknown_hosts(announced, known | hosts)

    async def _scrape_rounds(self, rt: Runtime) -> None:
        try:
            await asyncio.wait_for(self.discovered.wait(), self.step_s * 2)
        except TimeoutError:
            log.warning("no service discovery answer yet; scraping nothing until there is one")
        while True:
            now = self.clock()
            boundary = align(now, self.step) + self.step
            await asyncio.sleep((boundary - now).total_seconds())
            began = time.perf_counter()
            try:
                await self.run_round(rt, boundary)
            finally:
                metrics.ROUND_DURATION.observe(time.perf_counter() - began)

    async def run_round(self, rt: Runtime, window_end: datetime) -> list[AppRollup]:
        """Scrape every target, record their state, publish each application's window."""
        # An announced target whose time ran out since the last refresh is no longer scraped.
        started = self.clock()
        round_targets = [
            t
            for t in self.targets or ()
            if t.instance_id not in self.expiry or self.expiry[t.instance_id] > started
        ]
        results = await self.scraper.scrape_all(round_targets)
        async with rt.sessions() as session, session.begin():
            await save_scrape_states(session, results)
        self._count(round_targets, results)
        window_start = window_end - self.step
        previous: dict[str, list[Snapshot]] = defaultdict(list)
        current: dict[str, list[Snapshot]] = defaultdict(list)
        for target in round_targets:
            current.setdefault(target.app_id, [])
        for result in results:
            snapshot = result.snapshot
            if snapshot is None:
                continue
            app = result.target.app_id
            current[app].append(snapshot)
            before = self.last.get(snapshot.instance_id)
            if before is not None:
                previous[app].append(before)
        async with rt.sessions() as session:
            pushed = await pushed_snapshots(session, window_start)
        for app, (pushed_before, pushed_now) in pushed.items():
            previous[app].extend(pushed_before)
            current[app].extend(pushed_now)
        now = self.clock()
        # An application whose scraped instances have no earlier snapshot yet (first round, or
        # right after a restart) has no rates: it is primed now and published from the next
        # window, rather than announcing a window without data.
        made = []
        for app, snaps in sorted(current.items()):
            if snaps and not previous[app]:
                continue
            try:
                made.append(
                    aggregate_app(
                        app, previous[app], snaps, window_start, window_end, now, self.cpu_request
                    )
                )
            except Exception:
                # One application's odd samples never cost the others their window.
                log.exception("aggregating %s's window ending %s failed", app, window_end)
                metrics.AGGREGATION_FAILURES.labels(app).inc()
        async with rt.sessions() as session, session.begin():
            for rollup in made:
                if await publish_rollup(session, rt.outbox, rollup, self.step_s):
                    metrics.WINDOWS_PUBLISHED.labels(rollup.app_id).inc()
        for result in results:
            if result.snapshot is not None:
                self.last[result.snapshot.instance_id] = result.snapshot
        metrics.LATEST.update(made)
        async with rt.sessions() as session, session.begin():
            rules = await load_rules(session)
            await evaluate_alerts(session, rt.outbox, rules, window_end, self.step_s)
        return made

    def _count(self, round_targets: list[Target], results: list[ScrapeResult]) -> None:
        per_app: dict[str, int] = defaultdict(int)
        up: dict[str, int] = defaultdict(int)
        for target in round_targets:
            per_app[target.app_id] += 1
            up[target.app_id] += 0
        for result in results:
            app = result.target.app_id
            metrics.SCRAPE_DURATION.observe(result.duration_s)
            if result.up:
                up[app] += 1
            else:
                metrics.SCRAPE_FAILURES.labels(app).inc()
            if result.dropped:
                metrics.DROPPED_SERIES.labels(app).inc(result.dropped)
        for app, count in per_app.items():
            metrics.TARGETS.labels(app).set(count)
            metrics.TARGETS_UP.labels(app).set(up[app])

    async def _retain(self, rt: Runtime) -> None:
        while True:
            await asyncio.sleep(self.retention_every_s)
            await self.retain(rt)

    async def retain(self, rt: Runtime) -> int:
        """Downsample closed windows into coarser tiers and delete what is past retention."""
        made = 0
        for plan in plan_retention(self.policy, self.clock()):
            async with rt.sessions() as session, session.begin():
                made += await downsample_tier(session, plan)
        return made
