"""Liveness: what to do about managed instances whose processes died outside any change.

The executor's watch finds them (`Executor.watch`); these pure functions decide the healing
change: back to the application's desired count, away from every zone in which the application
lost all its instances at once (for this application that zone has failed).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.domain import Cause, CauseKind, ChangeKind, Placement, Target

ACTOR = "service:pipeline"


@dataclass(frozen=True)
class Member:
    """One managed instance of an application, as the watch sees it."""

    id: str
    version: str
    zone: str


@dataclass(frozen=True)
class Heal:
    """The change that restores an application after some of its instances died."""

    request_id: str
    kind: ChangeKind
    target: Target
    cause: Cause
    cause_text: str
    reason: str
    actor: str = ACTOR


def failed_zones(dead: Iterable[Member], survivors: Iterable[Member]) -> set[str]:
    """Zones in which every instance of the application died."""
    return {m.zone for m in dead} - {m.zone for m in survivors}


def allowed_zones(failed: set[str], known: Iterable[str]) -> frozenset[str]:
    """The zones a healing change may use: every known zone but the failed ones.

    Empty (anywhere) when no other zone is known: placing somewhere beats placing nowhere.
    """
    others = frozenset(known) - failed
    return others if others else frozenset()


def heal(
    app: str,
    dead: list[Member],
    survivors: list[Member],
    desired: int,
    zones: Iterable[str],
) -> Heal:
    """The scale change back to `desired` instances, placed away from the zones that failed."""
    ids = sorted(m.id for m in dead)
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
    lost = failed_zones(dead, survivors)
    known = set(zones) | {m.zone for m in survivors}
    versions = Counter(m.version for m in (*survivors, *dead))
    version = min(versions, key=lambda v: (-versions[v], v)) if versions else None
    reason = f"{len(ids)} instance{'s' if len(ids) != 1 else ''} exited: {', '.join(ids)}"
    if lost:
        reason += f"; zone{'s' if len(lost) != 1 else ''} {', '.join(sorted(lost))} lost"
        reason += " every instance, so the replacements go elsewhere"
    return Heal(
        request_id=f"pipeline/{app}/heal-{digest}",
        kind=ChangeKind.SCALE,
        target=Target(
            version=version,
            replicas=desired,
            placement=Placement(zones=allowed_zones(lost, known)),
        ),
        cause=Cause(kind=CauseKind.EVENT, id=f"instances-exited:{digest}"),
        cause_text=",".join(ids)[:300],
        reason=reason,
    )
