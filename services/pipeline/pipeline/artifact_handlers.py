"""Artifact use cases: registering an upload within its team's quota, and collecting artifacts
that nothing uses any more.

An artifact counts against the quota of the team it was uploaded for (the same content uploaded
again costs nothing). The collector deletes an artifact (its row, its file and every host's cached
copy) once it is older than the grace period and no change that is live, or ended within the
grace period, no running instance, no application's current version and no current spec in the
CMDB refers to it; files of the store that no row names are deleted after the same grace. When
the CMDB cannot be asked, the round deletes nothing. Registering and collecting one digest take
the same lock, so an upload never races its own deletion.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
from sqlalchemy import func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pipeline.artifacts import ArtifactError, ArtifactStore, Staged, normalise_digest
from pipeline.cmdb import Cmdb, UnknownApplication
from pipeline.domain import FINISHED_STATES
from pipeline.metrics import (
    ARTIFACT_BYTES,
    ARTIFACT_BYTES_COLLECTED,
    ARTIFACT_GC_RUNS,
    ARTIFACTS_COLLECTED,
)
from pipeline.store import app_state, artifacts, changes, instances

log = logging.getLogger(__name__)

FINISHED = [state.value for state in FINISHED_STATES]
STAGING_GRACE = timedelta(hours=1)


class QuotaExceeded(Exception):
    """The upload would take the team past its artifact quota."""


class CmdbUnreachable(Exception):
    """The CMDB could not say which artifacts the current specs use."""


async def _lock(session: AsyncSession, key: str) -> None:
    await session.execute(select(func.pg_advisory_xact_lock(func.hashtext(key))))


async def team_bytes(session: AsyncSession, team: str) -> int:
    """Bytes of the artifacts counted against `team`."""
    used = await session.execute(
        select(func.coalesce(func.sum(artifacts.c.size), 0)).where(artifacts.c.team == team)
    )
    return int(used.scalar_one())


async def register_upload(
    session: AsyncSession,
    store: ArtifactStore,
    staged: Staged,
    *,
    name: str,
    team: str,
    actor: str,
    quota_bytes: int,
) -> bool:
    """Place a staged upload in the store and record it for `team` within its quota; whether it
    is new (False: the store had it already, nothing is charged). Raise QuotaExceeded."""
    await _lock(session, f"pipeline-artifact-team:{team}")
    await _lock(session, f"pipeline-artifact:{staged.sha}")
    known = await session.execute(
        select(artifacts.c.sha256).where(artifacts.c.sha256 == staged.sha)
    )
    if known.first() is not None:
        await asyncio.to_thread(store.place, staged)  # back in place if its file was lost
        return False
    used = await team_bytes(session, team)
    if used + staged.size > quota_bytes:
        raise QuotaExceeded(
            f"team {team!r} holds {used} bytes of artifacts; {staged.size} more would pass its "
            f"quota of {quota_bytes} bytes (artifacts no change or spec uses are collected "
            "after the grace period)"
        )
    path = await asyncio.to_thread(store.place, staged)
    await session.execute(
        insert(artifacts)
        .values(
            sha256=staged.sha,
            name=name,
            size=staged.size,
            path=str(path),
            uploaded_by=actor,
            team=team,
        )
        .on_conflict_do_nothing(index_elements=["sha256"])
    )
    ARTIFACT_BYTES.labels(team).set(used + staged.size)
    return True


@dataclass
class Collected:
    """What one round of the collector deleted."""

    collected: list[str] = field(default_factory=list)
    bytes: int = 0
    orphans: int = 0


async def _in_use(session: AsyncSession, cutoff: datetime) -> tuple[set[str], set[str]]:
    """Artifacts referred to by the pipeline's own records, and the applications it knows."""
    used: set[str] = set()
    recent_changes = select(changes.c.artifact).where(
        changes.c.artifact.is_not(None),
        or_(
            changes.c.state.not_in(FINISHED),
            changes.c.finished_at.is_(None),
            changes.c.finished_at >= cutoff,
        ),
    )
    used.update(str(sha) for sha in (await session.execute(recent_changes)).scalars())
    running = select(instances.c.artifact).where(instances.c.status != "stopped")
    used.update(str(sha) for sha in (await session.execute(running)).scalars())
    apps: set[str] = set()
    for app, version, versions in await session.execute(
        select(app_state.c.app, app_state.c.version, app_state.c.artifacts)
    ):
        apps.add(str(app))
        if version is not None and isinstance(versions, dict) and version in versions:
            used.add(str(versions[version]))
    apps.update(
        str(app) for app in (await session.execute(select(changes.c.app).distinct())).scalars()
    )
    return used, apps


async def _used_by_specs(cmdb: Cmdb, apps: set[str]) -> set[str]:
    used: set[str] = set()
    for app in sorted(apps):
        try:
            spec = await cmdb.spec(app)
        except UnknownApplication:
            continue
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
            raise CmdbUnreachable(f"cannot read the spec of {app}: {error}") from error
        if spec.artifact:
            try:
                used.add(normalise_digest(spec.artifact))
            except ArtifactError:
                continue
    return used


async def collect_unused_artifacts(
    sessions: async_sessionmaker[AsyncSession],
    store: ArtifactStore,
    cmdb: Cmdb,
    grace: timedelta,
    now: datetime,
) -> Collected:
    """Delete the artifacts nothing uses that are older than `grace`; raise CmdbUnreachable (and
    delete nothing) when the CMDB cannot say what the current specs use."""
    cutoff = now - grace
    async with sessions() as session:
        old = (
            await session.execute(
                select(artifacts.c.sha256, artifacts.c.size, artifacts.c.team).where(
                    artifacts.c.created_at < cutoff
                )
            )
        ).all()
        recorded = set((await session.execute(select(artifacts.c.sha256))).scalars())
        used, apps = await _in_use(session, cutoff)
    unused = [row for row in old if row.sha256 not in used]
    files = await asyncio.to_thread(store.stored)
    # An upload being written is a stray until it is placed: never touch one younger than this.
    stray_cutoff = min(cutoff, now - STAGING_GRACE).timestamp()
    strays = [
        (sha, path)
        for sha, path, mtime in files
        if mtime < stray_cutoff and (sha is None or sha not in recorded)
    ]
    out = Collected()
    if unused:
        try:
            used |= await _used_by_specs(cmdb, apps)
        except CmdbUnreachable:
            ARTIFACT_GC_RUNS.labels("skipped").inc()
            raise
    teams: set[str] = set()
    for row in unused:
        if row.sha256 in used:
            continue
        async with sessions() as session, session.begin():
            await _lock(session, f"pipeline-artifact:{row.sha256}")
            still_live = await session.execute(
                select(changes.c.id)
                .where(changes.c.artifact == row.sha256, changes.c.state.not_in(FINISHED))
                .limit(1)
            )
            if still_live.first() is not None:
                continue
            deleted = await session.execute(
                artifacts.delete()
                .where(artifacts.c.sha256 == row.sha256, artifacts.c.created_at < cutoff)
                .returning(artifacts.c.sha256)
            )
            if deleted.first() is None:
                continue
            # Under the digest's lock, so an upload of the same content waits for this round.
            await asyncio.to_thread(store.remove, row.sha256)
        out.collected.append(str(row.sha256))
        out.bytes += int(row.size)
        if row.team:
            teams.add(str(row.team))
    for sha, path in strays:
        if sha is None:
            await asyncio.to_thread(path.unlink, True)
            out.orphans += 1
            continue
        async with sessions() as session, session.begin():
            await _lock(session, f"pipeline-artifact:{sha}")
            found = await session.execute(
                select(artifacts.c.sha256).where(artifacts.c.sha256 == sha)
            )
            if found.first() is None and sha not in used:
                await asyncio.to_thread(store.remove, sha)
                out.orphans += 1
    if teams:
        async with sessions() as session:
            for team in teams:
                ARTIFACT_BYTES.labels(team).set(await team_bytes(session, team))
    ARTIFACTS_COLLECTED.inc(len(out.collected))
    ARTIFACT_BYTES_COLLECTED.inc(out.bytes)
    ARTIFACT_GC_RUNS.labels("done").inc()
    if out.collected or out.orphans:
        log.info(
            "artifact collector: deleted %d artifacts (%d bytes) and %d stray files",
            len(out.collected),
            out.bytes,
            out.orphans,
        )
    return out


async def collect_periodically(
    sessions: async_sessionmaker[AsyncSession],
    store: ArtifactStore,
    cmdb: Cmdb,
    grace: timedelta,
    every_s: float,
    clock: Callable[[], datetime],
) -> None:
    """Run the collector every `every_s` seconds until cancelled; a failed round is logged."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await collect_unused_artifacts(sessions, store, cmdb, grace, clock())
        except CmdbUnreachable as error:
            log.warning("artifact collector: round skipped, nothing deleted: %s", error)
        except Exception:
            log.exception("artifact collector: round failed")
