"""The `ooda` CLI driving a release, a rollback and a freeze on five real services."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from ooda.testing import unique
from ooda_cli import main as cli

from .conftest import Surface

pytestmark = pytest.mark.integration


async def ooda(surface: Surface, *args: str, token: str | None = None) -> Any:
    """Run `ooda ARGS` as a user would, with the platform's environment (and `token`)."""
    runner = CliRunner()
    env = surface.cli_env | ({"OODA_TOKEN": token} if token else {})
    return await asyncio.to_thread(runner.invoke, cli.app, list(args), env=env, terminal_width=200)


def write_manifest(path: Path, app: str, version: str, workload: Path) -> Path:
    doc = {
        "app": app,
        "owner_team": "web",
        "spec": {
            "artifact_file": str(workload),
            "version": version,
            "replicas": {"min": 2, "max": 4, "desired": 2},
            "resources": {"cpu_millis": 250, "memory_mib": 128},
            "health_check": {"path": "/readyz", "timeout_seconds": 10},
            "slo": {"availability": 0.99, "latency_p99_ms": 200},
            "scaling": {"target_utilisation": 0.6, "policy": "reactive"},
            "attributes": {"capacity_rps": 50},
        },
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def change_id(output: str) -> str:
    found = re.search(r"change (chg-[0-9a-f]+) \(", output)
    assert found, output
    return found.group(1)


async def versions(surface: Surface, app: str) -> list[str]:
    async with httpx.AsyncClient() as client:
        response = await client.get(surface.url("cmdb") + "/v1/instances", params={"app": app})
    return sorted(i["version"] for i in response.json()["items"] if i["status"] == "ready")


async def wait_versions(surface: Surface, app: str, want: list[str]) -> None:
    async with asyncio.timeout(30):
        while await versions(surface, app) != want:
            await asyncio.sleep(0.3)


async def test_the_cli_drives_a_release_a_rollback_and_a_freeze(
    surface: Surface, tmp_path: Path
) -> None:
    app = unique("shop")
    manifest = write_manifest(tmp_path / "app.yaml", app, "1.0.0", surface.workload)

    # release 1.0.0: apply shows the new application and the change it triggered
    applied = await ooda(surface, "apply", str(manifest), token=surface.token("alice", "team:web"))
    assert applied.exit_code == 0, applied.output
    assert f"{app}: new application" in applied.output
    assert "+ version: 1.0.0" in applied.output
    first = change_id(applied.output)
    watched = await ooda(surface, "rollout", "watch", first, "--interval", "0.3", "--timeout", "60")
    assert watched.exit_code == 0, watched.output
    assert f"change {first} succeeded" in watched.output
    await wait_versions(surface, app, ["1.0.0", "1.0.0"])

    # applying the same manifest again changes nothing
    again = await ooda(surface, "apply", str(manifest))
    assert again.exit_code == 0 and "no changes" in again.output, again.output

    # release 2.0.0 through apply --watch, then roll it back
    write_manifest(manifest, app, "2.0.0", surface.workload)
    second_out = await ooda(surface, "apply", "--watch", str(manifest))
    assert second_out.exit_code == 0, second_out.output
    assert "~ version: 1.0.0 -> 2.0.0" in second_out.output
    second = change_id(second_out.output)
    await wait_versions(surface, app, ["2.0.0", "2.0.0"])
    back = await ooda(surface, "rollback", second, "--reason", "latency regression")
    assert back.exit_code == 0, back.output
    assert "rolling_back" in back.output
    rolled = await ooda(
        surface, "rollout", "watch", second, "--interval", "0.3", "--expect", "rolled_back"
    )
    assert rolled.exit_code == 0, rolled.output
    assert "rollback batch 1/" in rolled.output
    await wait_versions(surface, app, ["1.0.0", "1.0.0"])

    status = await ooda(surface, "status", app)
    assert status.exit_code == 0, status.output
    assert second in status.output and "rolled_back" in status.output

    # a freeze holds the next release with its reason; lifting it lets the release run
    frozen = await ooda(surface, "freeze", "on", "--reason", "incident 42")
    assert frozen.exit_code == 0 and "incident 42" in frozen.output, frozen.output
    try:
        write_manifest(manifest, app, "3.0.0", surface.workload)
        held_out = await ooda(surface, "apply", str(manifest))
        assert held_out.exit_code == 0, held_out.output
        third = change_id(held_out.output)
        async with asyncio.timeout(20):
            while True:
                shown = await ooda(surface, "status", app)
                if "incident 42" in shown.output.split("changes")[-1]:
                    break
                await asyncio.sleep(0.5)
        assert "releases frozen" in shown.output
        assert await versions(surface, app) == ["1.0.0", "1.0.0"]
        # a user without admin cannot lift the freeze, and the CLI says so with exit 2
        mallory = surface.token("mallory", "team:web")
        refused = await ooda(surface, "freeze", "off", token=mallory)
        assert refused.exit_code == 2, refused.output
        assert "refused the token (403)" in refused.output
    finally:
        lifted = await ooda(surface, "freeze", "off")
    assert lifted.exit_code == 0 and "not frozen" in lifted.output, lifted.output
    done = await ooda(surface, "rollout", "watch", third, "--interval", "0.3", "--timeout", "60")
    assert done.exit_code == 0, done.output
    await wait_versions(surface, app, ["3.0.0", "3.0.0"])

    # the deploy-done events of all this, decoded from the topic's first offset
    tail = await ooda(
        surface, "events", "tail", "deploy-done", "--from-beginning", "--idle", "3", "--json"
    )
    assert tail.exit_code == 0, tail.output
    seen = [json.loads(line) for line in tail.output.splitlines() if line.startswith("{")]
    mine = {e["data"]["change_id"]: e["data"]["outcome"] for e in seen if e["subject"] == app}
    assert mine[first] == "succeeded"
    assert mine[third] == "succeeded"
    assert all(e["type"] == "io.ooda.deploy.done.v1" for e in seen)


async def test_the_cli_exits_3_when_kafka_is_unreachable(surface: Surface) -> None:
    env = surface.cli_env | {"OODA_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    result = await asyncio.to_thread(
        CliRunner().invoke, cli.app, ["events", "tail", "deploy-done", "--idle", "1"], env=env
    )
    assert result.exit_code == 3, result.output
    assert "Kafka is unavailable at 127.0.0.1:1" in result.output
