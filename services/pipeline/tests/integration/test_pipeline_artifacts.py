"""Artifact uploads: bounded while streaming, per team with a quota, and collected when unused."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from ooda.testing import unique
from pipeline.artifact_handlers import CmdbUnreachable, collect_unused_artifacts
from pipeline.store import artifacts as artifacts_table

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


class Endless:
    """A request body of `total` bytes sent in 1 MiB chunks, counting what was taken."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.sent = 0
        self.chunk = b"\0" * MIB

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.sent < self.total:
            self.sent += len(self.chunk)
            yield self.chunk


async def test_a_huge_upload_without_a_length_is_refused_at_the_limit_without_buffering(
    kit: Any, tmp_path: Path
) -> None:
    async with kit.pipeline(kit.infra, kit.cmdb, tmp_path, artifact_max_bytes=8 * MIB) as svc:
        team = svc.auth("ci", "team:shop-team")
        body = Endless(300 * MIB)  # chunked: no Content-Length at all
        tracemalloc.start()
        try:
            answer = await svc.client.post(
                "/v1/artifacts", params={"name": "huge.pyz"}, content=body, headers=team
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # Reading stopped at the limit (give or take a chunk), and nothing was buffered whole.
        assert body.sent <= 10 * MIB, body.sent
        assert peak < 48 * MIB, peak
        assert answer.status_code == 413, answer.text
        assert str(8 * MIB) in answer.json()["detail"]

        # A Content-Length over the limit is refused before any of the body is read.
        declared = Endless(300 * MIB)
        early = await svc.client.post(
            "/v1/artifacts",
            content=declared,
            headers=team | {"Content-Length": str(300 * MIB)},
        )
        assert early.status_code == 413 and declared.sent <= MIB
        # Nothing of either upload is left in the store.
        assert not [p for p in (tmp_path / "artifacts").glob("*") if p.is_file()]


async def test_uploading_needs_a_teams_scope_and_stays_within_its_quota(
    kit: Any, tmp_path: Path
) -> None:
    quota = 250_000
    async with kit.pipeline(kit.infra, kit.cmdb, tmp_path, artifact_quota_bytes=quota) as svc:
        client = svc.client
        blobs = [os.urandom(100_000) for _ in range(4)]
        pusher = svc.auth("agent", "metrics:push")
        refused = await client.post("/v1/artifacts", content=blobs[0], headers=pusher)
        assert refused.status_code == 403, refused.text
        blue = svc.auth("ci", "team:blue")
        other_team = await client.post(
            "/v1/artifacts", params={"team": "green"}, content=blobs[0], headers=blue
        )
        assert other_team.status_code == 403, other_team.text

        first = await client.post("/v1/artifacts", content=blobs[0], headers=blue)
        assert first.status_code == 201, first.text
        assert first.json()["team"] == "blue"
        assert first.json()["sha256"] == hashlib.sha256(blobs[0]).hexdigest()
        second = await client.post("/v1/artifacts", content=blobs[1], headers=blue)
        assert second.status_code == 201, second.text
        over = await client.post("/v1/artifacts", content=blobs[2], headers=blue)
        assert over.status_code == 409, over.text
        assert "quota" in over.json()["detail"] and str(quota) in over.json()["detail"]
        assert not (tmp_path / "artifacts" / f"{hashlib.sha256(blobs[2]).hexdigest()}.pyz").exists()
        # The same content again costs nothing; another team has its own quota.
        again = await client.post("/v1/artifacts", content=blobs[0], headers=blue)
        assert again.status_code == 200, again.text
        green = svc.auth("ci", "team:green")
        assert (
            await client.post("/v1/artifacts", content=blobs[2], headers=green)
        ).status_code == 201
        # A release token names the team the artifact counts against.
        release = svc.auth("ci", "release")
        unnamed = await client.post("/v1/artifacts", content=blobs[3], headers=release)
        assert unnamed.status_code == 422 and "team" in unnamed.text
        named = await client.post(
            "/v1/artifacts", params={"team": "green"}, content=blobs[3], headers=release
        )
        assert named.status_code == 201, named.text
        metrics = (await client.get("/metrics")).text
        assert 'pipeline_artifact_bytes{team="blue"} 200000.0' in metrics


async def test_artifacts_no_live_change_or_current_spec_uses_are_collected_after_the_grace(
    kit: Any, tmp_path: Path
) -> None:
    app = unique("gc")
    kit.cmdb.add_app(app, owner="gc-team")
    async with kit.pipeline(kit.infra, kit.cmdb, tmp_path, artifact_gc_grace_seconds=3600) as svc:
        client, team = svc.client, svc.auth("ci", "team:gc-team")
        shas = {}
        for name in ("live", "spec", "unused", "recent"):
            answer = await client.post(
                "/v1/artifacts", params={"name": name}, content=os.urandom(5000), headers=team
            )
            assert answer.status_code == 201, answer.text
            shas[name] = answer.json()["sha256"]
        kit.cmdb.specs[app] = kit.cmdb.specs[app] | {
            "artifact": f"sha256:{shas['spec']}",
            "version": "v-spec",
        }
        # A frozen pipeline keeps the change waiting: it is live, so its artifact stays.
        admin = svc.auth("root", "admin")
        freeze = await client.put("/v1/freeze", json={"reason": "gc test"}, headers=admin)
        assert freeze.status_code == 200, freeze.text
        change = await kit.request_deploy(client, team, app, "v-live", shas["live"], {"size": 1})
        assert (await client.get(f"/v1/changes/{change}")).json()["state"] == "pending"
        long_ago = datetime.now(UTC) - timedelta(days=2)
        old = [shas[n] for n in ("live", "spec", "unused")]
        async with svc.app.state.runtime.sessions() as session, session.begin():
            await session.execute(
                update(artifacts_table)
                .where(artifacts_table.c.sha256.in_(old))
                .values(created_at=long_ago)
            )

        # A CMDB that cannot say what the current specs use: the round deletes nothing.
        class DarkCmdb:
            async def spec(self, app: str) -> Any:
                raise httpx.ConnectError("the CMDB is down")

        with pytest.raises(CmdbUnreachable):
            await collect_unused_artifacts(
                svc.app.state.runtime.sessions,
                svc.app.state.pipeline.artifacts,
                DarkCmdb(),
                timedelta(hours=1),
                datetime.now(UTC),
            )
        assert (tmp_path / "artifacts" / f"{shas['unused']}.pyz").exists()

        assert (await client.post("/v1/artifacts/gc", headers=team)).status_code == 403
        collected = await client.post("/v1/artifacts/gc", headers=admin)
        assert collected.status_code == 200, collected.text
        assert collected.json()["collected"] == [shas["unused"]]
        assert collected.json()["bytes"] == 5000
        assert (await client.get(f"/v1/artifacts/{shas['unused']}")).status_code == 404
        assert not (tmp_path / "artifacts" / f"{shas['unused']}.pyz").exists()
        for kept in ("live", "spec", "recent"):
            assert (await client.get(f"/v1/artifacts/{shas[kept]}")).status_code == 200
            assert (tmp_path / "artifacts" / f"{shas[kept]}.pyz").exists()
        metrics = (await client.get("/metrics")).text
        assert "pipeline_artifacts_collected_total" in metrics
        # Collecting again finds nothing more to do.
        assert (await client.post("/v1/artifacts/gc", headers=admin)).json()["collected"] == []
