"""The committed dashboards and Prometheus config: fresh, and every panel's query returns data
from a real Prometheus (the Debian package) scraping the running services and their instances."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import yaml

from ooda.scenario import AppPlan, declare_app, upload_artifact, wait_for_instances
from ooda.scenario import Platform as ScenarioPlatform
from ooda.testing import SERVICES, free_port, unique

from .conftest import Surface

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "deploy" / "grafana" / "dashboards"
SCHEMA_TOOL = REPO / "tools" / "grafana-schema"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "ooda_dashboards", REPO / "deploy/grafana/generate.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, expr) of every panel target, plus the variables' queries."""
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                found.append((board["title"], panel["title"], target["expr"]))
        for var in board["templating"]["list"]:
            if var["type"] == "query":
                metric = var["query"].split("(", 1)[1].split(",", 1)[0]
                found.append((board["title"], f"variable {var['name']}", metric))
    return found


def executable(expr: str) -> str:
    """A panel query as Grafana sends it with every variable at 'All'."""
    return re.sub(r"\$[a-z]+\b", ".*", expr.replace("$__rate_interval", "20s"))


def schema_check(*paths: Path) -> subprocess.CompletedProcess[str]:
    """Type-check dashboards against the `Dashboard` type of @grafana/schema (tools/grafana-schema)."""
    if not (SCHEMA_TOOL / "node_modules" / "@grafana" / "schema").exists():
        npm = shutil.which("npm")
        assert npm, "npm is needed to check the dashboards against Grafana's schema"
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=SCHEMA_TOOL, check=True)
    return subprocess.run(
        ["node", str(SCHEMA_TOOL / "check.mjs"), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.unit
def test_the_generator_writes_the_three_dashboards() -> None:
    assert sorted(p.name for p in DASHBOARDS.glob("*.json")) == [
        "capacity-and-budget.json",
        "loop-overview.json",
        "platform-health.json",
    ]


@pytest.mark.unit
def test_every_dashboard_is_a_dashboard_of_grafanas_published_schema() -> None:
    paths = sorted(DASHBOARDS.glob("*.json"))
    result = schema_check(*paths)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("a valid Dashboard") == len(paths) == 3


@pytest.mark.unit
def test_the_schema_check_rejects_a_field_of_the_wrong_type_and_an_unknown_field(
    tmp_path: Path,
) -> None:
    board = json.loads((DASHBOARDS / "capacity-and-budget.json").read_text())
    board["panels"][1]["gridPos"]["h"] = "8"
    wrong_type = tmp_path / "wrong-type.json"
    wrong_type.write_text(json.dumps(board, indent=2))
    result = schema_check(wrong_type)
    assert result.returncode == 1
    assert "wrong-type.json" in result.stdout and "not assignable to type 'number'" in result.stdout
    # What the SDK emits before the generator drops the interval variable's fields.
    from grafana_foundation_sdk.cog.encoder import JSONEncoder

    raw = json.loads(json.dumps(generator().capacity_and_budget().build(), cls=JSONEncoder))
    unknown = tmp_path / "unknown-field.json"
    unknown.write_text(json.dumps(raw, indent=2))
    result = schema_check(unknown)
    assert result.returncode == 1
    assert "'\"auto\"' does not exist in type 'VariableModel'" in result.stdout


@pytest.mark.unit
def test_the_committed_dashboards_and_prometheus_config_are_what_the_generator_writes() -> None:
    for path, text in generator().render().items():
        assert path.read_text() == text, f"{path} is stale: run deploy/grafana/generate.py"


@pytest.mark.unit
def test_every_panel_has_a_query_against_the_prometheus_datasource_variable() -> None:
    for path in DASHBOARDS.glob("*.json"):
        board = json.loads(path.read_text())
        assert board["uid"].startswith("ooda-")
        panels = [p for p in board["panels"] if p["type"] != "row"]
        assert len(panels) >= 8
        for panel in panels:
            assert panel["targets"], panel["title"]
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])


@pytest.mark.unit
def test_the_dashboards_decode_into_the_grafana_11_models_of_the_sdk() -> None:
    from grafana_foundation_sdk.cog import plugins
    from grafana_foundation_sdk.models.dashboard import Dashboard, Panel, RowPanel
    from grafana_foundation_sdk.models.prometheus import Dataquery

    plugins.register_default_plugins()
    for path in DASHBOARDS.glob("*.json"):
        raw = json.loads(path.read_text())
        assert raw["schemaVersion"] >= 39, "Grafana 11 schema"
        board = Dashboard.from_json(raw)
        assert board.panels and len(board.panels) == len(raw["panels"])
        for panel in board.panels:
            assert isinstance(panel, Panel | RowPanel)
            if isinstance(panel, Panel):
                assert panel.type_val in ("timeseries", "stat"), panel.type_val
                assert panel.targets and all(isinstance(t, Dataquery) for t in panel.targets)


@pytest.mark.unit
def test_promtool_accepts_the_committed_prometheus_config() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is required"
    result = subprocess.run(
        [promtool, "check", "config", str(REPO / "deploy/prometheus/prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@contextlib.asynccontextmanager
async def prometheus(surface: Surface, workdir: Path) -> AsyncIterator[str]:
    binary = shutil.which("prometheus")
    assert binary, "the Debian prometheus binary is required (apt-get install prometheus)"
    services = {name: surface.url(name).removeprefix("http://") for name in SERVICES}
    config = generator().prometheus_config(services, surface.url("cmdb"), "1s")
    for job in config["scrape_configs"]:
        for sd in job.get("http_sd_configs", []):
            sd["refresh_interval"] = "2s"
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (workdir / "prometheus.log").open("wb")
    proc = subprocess.Popen(  # noqa: ASYNC220 (a long-running server, started once)
        [
            binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as client, asyncio.timeout(30):
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url + "/-/ready")).status_code == 200:
                        break
                assert proc.poll() is None, (workdir / "prometheus.log").read_text()[-2000:]
                await asyncio.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


BUDGET, QUOTA_CPU, REQUEST_CPU = 500.0, 4000, 250


async def limits(
    client: httpx.AsyncClient, platform: ScenarioPlatform, app: str, team: str
) -> None:
    """The team's scaling policy, budget and quotas, set through elastic's API."""
    owner = platform.headers("ooda-dashboards", f"team:{team}")
    infra = platform.headers("ooda-dashboards", "infra")
    policy = {
        "team": team,
        "min_replicas": 2,
        "max_replicas": 3,
        "request": {"cpu_millis": REQUEST_CPU, "memory_mib": 128},
    }
    quota = {"cpu_millis": QUOTA_CPU, "memory_mib": 8192}
    for url, body, headers in (
        (f"/v1/apps/{app}/policy", policy, owner),
        (f"/v1/teams/{team}/budget", {"period": "day", "limit": BUDGET}, infra),
        (f"/v1/quotas/{team}/pool/general", quota, infra),
        (f"/v1/quotas/{team}/zone/zone-a", quota, infra),
    ):
        answer = await client.put(platform.elastic + url, json=body, headers=headers)
        assert answer.status_code == 200, (url, answer.text)


def expected(app: str, team: str) -> list[tuple[str, str]]:
    """Queries that return data only once the metrics show what the test set up."""
    of = f'team="{team}"'
    pool = f'{of},scope="pool",name="general"'
    return [
        ("budget limit", f'ooda_budget_limit_replica_hours{{{of},period="day"}} == {BUDGET}'),
        ("budget used", f"ooda_budget_used_replica_hours{{{of}}} >= 0"),
        (
            "committed covers the replicas to the period's end",
            f"ooda_budget_committed_replica_hours{{{of}}} > ooda_budget_used_replica_hours{{{of}}}",
        ),
        ("replicas", f'ooda_elastic_app_replicas{{{of},app="{app}"}} == 2'),
        ("quota limit", f"ooda_quota_cpu_millis{{{pool}}} == {QUOTA_CPU}"),
        ("quota used", f"ooda_quota_used_cpu_millis{{{pool}}} == {2 * REQUEST_CPU}"),
        ("pool allocation", 'ooda_pool_allocated_cpu_millis{pool="general"} > 0'),
        ("forecast", f'ooda_decision_forecast_rps{{app="{app}"}} >= 0'),
    ]


async def traffic(surface: Surface, app: str) -> None:
    """Load on the app's instances and reads on every service API, until cancelled."""
    async with httpx.AsyncClient(timeout=5) as client:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                items = (
                    await client.get(surface.url("cmdb") + "/v1/instances", params={"app": app})
                ).json()["items"]
                for inst in items:
                    await client.get(f"http://{inst['endpoint'].removeprefix('http://')}/work")
                await client.get(surface.url("pipeline") + "/v1/changes", params={"limit": 1})
                await client.get(surface.url("elastic") + f"/v1/apps/{app}/state")
                await client.get(surface.url("decision") + f"/v1/apps/{app}/decisions")
                await client.get(surface.url("monitor") + "/v1/targets")
            await asyncio.sleep(0.05)


@pytest.mark.integration
async def test_every_panel_query_returns_data_from_a_real_prometheus(
    surface: Surface, tmp_path: Path
) -> None:
    app, team = unique("dash"), unique("team")
    platform = ScenarioPlatform(surface.infra.auth_secret, **{n: surface.url(n) for n in SERVICES})
    async with httpx.AsyncClient(timeout=30) as client:
        sha = await upload_artifact(client, platform, surface.workload, team)
        plan = AppPlan(app, team=team, min_replicas=2, desired=2, max_replicas=3)
        await declare_app(client, platform, plan, sha)
        await limits(client, platform, app, team)
        await wait_for_instances(client, platform, app, 2, timeout_s=60)
    load = asyncio.create_task(traffic(surface, app))
    missing: dict[str, Any] = {}
    try:
        async with prometheus(surface, tmp_path) as prom, httpx.AsyncClient(timeout=10) as client:
            pending = {(board, title, executable(expr)) for board, title, expr in panel_queries()}
            pending |= {("stored state", what, expr) for what, expr in expected(app, team)}
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(75):
                    while pending:
                        for item in sorted(pending):
                            answer = await client.get(
                                prom + "/api/v1/query", params={"query": item[2]}
                            )
                            body = answer.json()
                            assert body["status"] == "success", (item, body)
                            if body["data"]["result"]:
                                pending.discard(item)
                        await asyncio.sleep(1)
            missing = {f"{b} / {t}": q for b, t, q in pending}
            targets = (await client.get(prom + "/api/v1/targets")).json()["data"]["activeTargets"]
    finally:
        load.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await load
    jobs = {t["labels"]["job"] for t in targets if t["health"] == "up"}
    assert jobs >= {*SERVICES, "ooda-instances"}, targets
    assert any(t["labels"].get("app") == app for t in targets), "instances come from the CMDB's SD"
    assert not missing, f"panels without data: {json.dumps(missing, indent=1)}"
