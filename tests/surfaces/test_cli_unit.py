"""The `ooda` CLI against a fake platform behind an httpx transport: output and exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import yaml
from typer.testing import CliRunner

from ooda.auth import SERVICES, issue_token
from ooda_cli import main as cli
from ooda_cli.diff import diff_specs

pytestmark = pytest.mark.unit

SECRET = "s" * 64
PORTS = {8001: "cmdb", 8002: "pipeline", 8003: "monitor", 8004: "elastic", 8005: "decision"}


def token_for(subject: str, *scopes: str) -> str:
    """What an admin hands a user: `ooda-token --subject S --scope ... --audience all`."""
    return issue_token(SECRET, subject, list(scopes), audience=SERVICES)


SPEC = {
    "artifact": "sha256:" + "a" * 64,
    "version": "1.0.0",
    "replicas": {"min": 2, "max": 6, "desired": 2},
    "resources": {"cpu_millis": 250, "memory_mib": 128},
    "health_check": {"path": "/readyz", "timeout_seconds": 10},
    "slo": {"availability": 0.99},
    "scaling": {"target_utilisation": 0.6, "policy": "predictive"},
}


def change(state: str, started: int = 0, done: int = 0, **kw: Any) -> dict[str, Any]:
    plan = {
        "plan": {
            "batches": [
                {"number": n, "stop_first": [], "start": [{"instance_id": f"i{n}"}], "stop": []}
                for n in (1, 2)
            ]
        },
        "batches": 2,
        "started": started,
        "done": done,
    }
    return {
        "id": "chg-1",
        "app": "shop",
        "request_id": "cmdb/shop/spec-2/deploy",
        "kind": "deploy",
        "state": state,
        "position": f"{state} batch {started} of 2",
        "reason": kw.pop("reason", ""),
        "actor": "alice",
        "rollout": plan,
        "rollback": None,
    } | kw


class FakePlatform:
    """Just enough of the CMDB, pipeline and decision APIs, recording every request."""

    def __init__(self) -> None:
        self.spec: dict[str, Any] | None = SPEC | {
            "id": "shop",
            "kind": "application_spec",
            "revision": 1,
        }
        self.app: dict[str, Any] | None = {"id": "shop", "owner_team": "web"}
        self.changes: list[dict[str, Any]] = []
        self.watch_states: list[dict[str, Any]] = []
        self.freeze: dict[str, Any] = {"frozen": False}
        self.requests: list[httpx.Request] = []
        self.down: set[int] = set()

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        port, path, method = request.url.port, request.url.path, request.method
        if port in self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if method != "GET":
            auth = request.headers.get("authorization", "")
            try:
                jwt.decode(
                    auth.removeprefix("Bearer "),
                    SECRET,
                    algorithms=["HS256"],
                    issuer="ooda",
                    audience=PORTS[port],
                )
            except jwt.PyJWTError:
                return httpx.Response(401, json={"detail": "invalid token"})
        body: dict[str, Any] = (
            json.loads(request.content) if request.content and path != "/v1/artifacts" else {}
        )
        if port == 8001:
            if path == "/v1/apps/shop":
                if method == "PUT":
                    self.app = {"id": "shop"} | body
                    return httpx.Response(200, json={"id": "shop"})
                return httpx.Response(200, json=self.app) if self.app else httpx.Response(404)
            if path == "/v1/apps/shop/spec":
                if method == "PUT":
                    revision = (self.spec or {}).get("revision", 0) + 1
                    self.spec = body | {"revision": revision}
                    request_id = f"cmdb/shop/spec-{revision}/deploy"
                    self.changes.insert(0, change("pending", request_id=request_id))
                    return httpx.Response(
                        201,
                        json={
                            "spec": self.spec,
                            "revision": revision,
                            "created": True,
                            "change_set_id": "cs-1",
                            "change_request_id": request_id,
                        },
                    )
                return httpx.Response(200, json=self.spec) if self.spec else httpx.Response(404)
            if path == "/v1/instances":
                return httpx.Response(
                    200,
                    json={
                        "items": [
                            {
                                "id": "shop-1",
                                "version": "1.0.0",
                                "zone_id": "zone-a",
                                "host_id": "h1",
                                "endpoint": "127.0.0.1:9000",
                                "status": "ready",
                            }
                        ],
                        "next": None,
                    },
                )
            if path == "/v1/apps":
                return httpx.Response(200, json={"items": [self.app], "next": None})
        if port == 8002:
            if path == "/v1/changes":
                return httpx.Response(200, json={"items": self.changes})
            if path == "/v1/changes/chg-1":
                current = (
                    self.watch_states.pop(0) if len(self.watch_states) > 1 else self.watch_states[0]
                )
                return httpx.Response(200, json=current)
            if path.startswith("/v1/changes/chg-1/"):
                action = path.rsplit("/", 1)[1]
                if action == "resume":
                    return httpx.Response(
                        409, json={"detail": "change chg-1 cannot resume: it is running"}
                    )
                state = {"pause": "paused", "abort": "aborted", "rollback": "rolling_back"}[action]
                return httpx.Response(200, json=change(state, reason=body.get("reason", "")))
            if path == "/v1/freeze":
                if method == "PUT":
                    self.freeze = {"frozen": True, "actor": "alice", "since": "now"} | body
                elif method == "DELETE":
                    self.freeze = {"frozen": False}
                return httpx.Response(200, json=self.freeze)
            if path.startswith("/v1/artifacts/"):
                return httpx.Response(404, json={"detail": "unknown"})
            if path == "/v1/artifacts":
                return httpx.Response(201, json={"sha256": "x"})
        if port == 8005 and path == "/v1/apps/shop/decisions":
            return httpx.Response(
                200,
                json=[
                    {
                        "window_end": "2026-11-30T12:00:00Z",
                        "policy": "predictive",
                        "current_replicas": 2,
                        "desired_replicas": 3,
                        "published": True,
                        "reason": "forecast 70 rps above capacity",
                    }
                ],
            )
        return httpx.Response(404, json={"detail": f"no route {method} {path}"})


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakePlatform:
    platform = FakePlatform()
    monkeypatch.setattr(cli, "TRANSPORT", httpx.MockTransport(platform.handle))
    monkeypatch.setattr(cli, "SLEEP", lambda _s: None)
    for name in ("CMDB", "PIPELINE", "MONITOR", "ELASTIC", "DECISION"):
        monkeypatch.delenv(f"OODA_{name}_URL", raising=False)
    monkeypatch.setenv("OODA_TOKEN", token_for("ops", "admin"))
    monkeypatch.setenv("OODA_AUTH_SECRET", SECRET)  # an admin's shell: the CLI must not use it
    monkeypatch.setenv("COLUMNS", "200")
    return platform


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli.app, list(args), terminal_width=200)


def manifest(tmp_path: Path, **spec: Any) -> Path:
    path = tmp_path / "shop.yaml"
    path.write_text(yaml.safe_dump({"app": "shop", "owner_team": "web", "spec": SPEC | spec}))
    return path


def test_apply_shows_the_spec_diff_and_the_change_it_triggers(
    fake: FakePlatform, tmp_path: Path
) -> None:
    result = invoke("apply", str(manifest(tmp_path, version="1.1.0")))
    assert result.exit_code == 0, result.output
    assert "~ version: 1.0.0 -> 1.1.0" in result.output
    assert "spec revision 2 of shop recorded" in result.output
    assert "change chg-1 (deploy, pending) for request cmdb/shop/spec-2/deploy" in result.output
    assert fake.spec is not None and fake.spec["version"] == "1.1.0"


def test_apply_of_the_current_spec_changes_nothing(fake: FakePlatform, tmp_path: Path) -> None:
    result = invoke("apply", str(manifest(tmp_path)))
    assert result.exit_code == 0, result.output
    assert "no changes" in result.output
    assert not [r for r in fake.requests if r.method == "PUT"]


def test_apply_dry_run_shows_the_diff_and_writes_nothing(
    fake: FakePlatform, tmp_path: Path
) -> None:
    result = invoke(
        "apply", "--dry-run", str(manifest(tmp_path, replicas={"min": 2, "max": 6, "desired": 4}))
    )
    assert result.exit_code == 0, result.output
    assert "~ replicas.desired: 2 -> 4" in result.output
    assert not [r for r in fake.requests if r.method == "PUT"]


def test_apply_uploads_an_artifact_file_and_declares_its_digest(
    fake: FakePlatform, tmp_path: Path
) -> None:
    (tmp_path / "app.pyz").write_bytes(b"zipapp bytes")
    spec = {k: v for k, v in SPEC.items() if k != "artifact"} | {"artifact_file": "app.pyz"}
    path = tmp_path / "shop.yaml"
    path.write_text(yaml.safe_dump({"app": "shop", "owner_team": "web", "spec": spec}))
    result = invoke("apply", str(path))
    assert result.exit_code == 0, result.output
    assert "uploaded artifact app.pyz" in result.output
    assert fake.spec is not None and fake.spec["artifact"].startswith("sha256:")
    assert fake.spec["artifact"] != SPEC["artifact"]


def test_apply_of_a_bad_manifest_is_a_usage_error(fake: FakePlatform, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("app: shop\n")
    result = invoke("apply", str(path))
    assert result.exit_code == 2
    assert "missing owner_team, spec" in result.output


def test_status_of_an_app_shows_instances_changes_and_decisions_with_reasons(
    fake: FakePlatform,
) -> None:
    fake.changes = [change("running", 1, 0)]
    result = invoke("status", "shop")
    assert result.exit_code == 0, result.output
    assert "shop-1" in result.output and "ready" in result.output
    assert "chg-1" in result.output and "running" in result.output
    assert "forecast 70 rps above capacity" in result.output


def test_status_points_out_instances_running_another_version_than_the_spec(
    fake: FakePlatform,
) -> None:
    assert fake.spec is not None
    fake.spec["version"] = "2.0.0"
    result = invoke("status", "shop")
    assert result.exit_code == 0, result.output
    assert "drift: the spec declares 2.0.0 but ready instances run 1.0.0" in result.output


def test_status_warns_and_goes_on_when_the_decision_service_is_down(fake: FakePlatform) -> None:
    fake.down.add(8005)
    result = invoke("status", "shop")
    assert result.exit_code == 0, result.output
    assert "decision is unavailable" in result.output
    assert "shop-1" in result.output


def test_a_down_cmdb_exits_3_naming_the_service_and_url(fake: FakePlatform) -> None:
    fake.down.add(8001)
    result = invoke("status", "shop")
    assert result.exit_code == 3
    assert "cmdb is unavailable at http://127.0.0.1:8001" in result.output


def test_service_urls_come_from_the_environment(
    fake: FakePlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OODA_PIPELINE_URL", "http://127.0.0.1:9999")
    fake.down.add(9999)
    result = invoke("freeze")
    assert result.exit_code == 3
    assert "http://127.0.0.1:9999" in result.output


def test_rollout_watch_follows_batches_until_success(fake: FakePlatform) -> None:
    fake.watch_states = [
        change("planned"),
        change("running", 1, 0),
        change("running", 2, 1),
        change("succeeded", 2, 2),
    ]
    result = invoke("rollout", "watch", "chg-1", "--interval", "0")
    assert result.exit_code == 0, result.output
    assert "batch 1/2" in result.output and "batch 2/2" in result.output
    assert "change chg-1 succeeded" in result.output


def test_rollout_watch_exits_1_when_the_change_rolls_back(fake: FakePlatform) -> None:
    rolled = change("rolled_back", 1, 0, reason="batch 1: instance i1 not ready")
    rolled["rollback"] = rolled["rollout"] | {"started": 1, "done": 1}
    fake.watch_states = [change("running", 1, 0), rolled]
    result = invoke("rollout", "watch", "chg-1", "--interval", "0")
    assert result.exit_code == 1
    assert "rollback batch 1/2" in result.output
    assert "change chg-1 rolled_back: batch 1: instance i1 not ready" in result.output


@pytest.mark.parametrize(
    ("action", "state"), [("pause", "paused"), ("abort", "aborted"), ("rollback", "rolling_back")]
)
def test_change_actions_report_the_new_state_and_send_the_reason(
    fake: FakePlatform, action: str, state: str
) -> None:
    result = invoke(action, "chg-1", "--reason", "bad canary")
    assert result.exit_code == 0, result.output
    assert f"change chg-1 is {state} (bad canary)" in result.output
    sent = fake.requests[-1]
    assert sent.url.path == f"/v1/changes/chg-1/{action}"
    assert json.loads(sent.content) == {"reason": "bad canary"}


def test_an_illegal_transition_exits_1_with_the_pipelines_reason(fake: FakePlatform) -> None:
    result = invoke("resume", "chg-1")
    assert result.exit_code == 1
    assert "cannot resume: it is running" in result.output


def test_freeze_on_and_off_as_the_subject_of_the_token(
    fake: FakePlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = token_for("alice", "admin")
    monkeypatch.setenv("OODA_TOKEN", alice)
    on = invoke("freeze", "on", "--reason", "incident 42")
    assert on.exit_code == 0, on.output
    assert "frozen" in on.output and "incident 42" in on.output
    assert fake.requests[-1].headers["authorization"] == f"Bearer {alice}"
    off = invoke("freeze", "off")
    assert off.exit_code == 0 and "not frozen" in off.output


def test_freeze_on_without_a_reason_is_a_usage_error(fake: FakePlatform) -> None:
    result = invoke("freeze", "on")
    assert result.exit_code == 2
    assert "needs --reason" in result.output


def test_a_write_without_a_token_exits_2_even_with_the_platform_secret_at_hand(
    fake: FakePlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OODA_TOKEN")  # OODA_AUTH_SECRET stays set: nothing is minted from it
    result = invoke("pause", "chg-1")
    assert result.exit_code == 2
    assert "no token: set OODA_TOKEN" in result.output and "ooda-token" in result.output
    assert not fake.requests


def test_a_refused_token_exits_2(fake: FakePlatform, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OODA_TOKEN", "not-a-jwt")
    result = invoke("abort", "chg-1")
    assert result.exit_code == 2
    assert "pipeline refused the token (401)" in result.output


def test_events_tail_of_an_unknown_topic_is_a_usage_error() -> None:
    result = invoke("events", "tail", "no-such-topic")
    assert result.exit_code == 2
    assert "unknown topic 'no-such-topic'" in result.output


def test_spec_diff_ignores_cmdb_metadata_and_empty_defaults() -> None:
    current: dict[str, Any] = SPEC | {
        "id": "shop",
        "kind": "application_spec",
        "revision": 3,
        "budget": None,
        "labels": {},
    }
    assert diff_specs(current, SPEC) == []
    assert diff_specs(current | {"attributes": {"capacity_rps": 40}}, SPEC) == [
        ("-", "attributes.capacity_rps", 40)
    ]
    assert diff_specs(None, {"version": "1"}) == [("+", "version", "1")]


def test_events_grant_of_a_team_name_unfit_for_a_principal_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli.app, ["events", "grant", "Pay Ments", "deploy-done"])
    assert result.exit_code == 2 and "lowercase letters" in result.output


def test_events_grant_on_a_broker_without_authentication_is_a_usage_error() -> None:
    result = CliRunner().invoke(
        cli.app,
        ["events", "grant", "payments", "deploy-done"],
        env={"OODA_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"},
    )
    assert result.exit_code == 2 and "does not authenticate clients" in result.output
