"""Settings validation and bearer-token authentication."""

from __future__ import annotations

import httpx
import pytest
from fastapi import Depends, FastAPI
from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from ooda.auth import Actor, issue_token, requires, verify_token
from ooda.settings import ServiceSettings, load_settings

pytestmark = pytest.mark.unit
SECRET = "s" * 40


class DemoSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_")
    service_name: str = "demo"
    port: int = 8099


def test_a_missing_variable_stops_start_up_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DEMO_DATABASE_URL", raising=False)
    monkeypatch.setenv("OODA_AUTH_SECRET", SECRET)
    with pytest.raises(SystemExit) as stopped:
        load_settings(DemoSettings)
    assert stopped.value.code == 2
    assert "DEMO_DATABASE_URL" in capsys.readouterr().err


def test_a_bad_shared_variable_is_named_without_the_service_prefix(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DEMO_DATABASE_URL", "postgresql+asyncpg://x@y/z")
    monkeypatch.setenv("OODA_AUTH_SECRET", "short")
    monkeypatch.setenv("DEMO_PORT", "not-a-port")
    with pytest.raises(SystemExit):
        load_settings(DemoSettings)
    err = capsys.readouterr().err
    assert "OODA_AUTH_SECRET" in err and "DEMO_PORT" in err
    assert "short" not in err.replace("too short", "")


def test_settings_read_prefixed_and_shared_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_DATABASE_URL", "postgresql+asyncpg://x@y/z")
    monkeypatch.setenv("OODA_AUTH_SECRET", SECRET)
    monkeypatch.setenv("OODA_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    monkeypatch.setenv("DEMO_PORT", "9001")
    s = load_settings(DemoSettings)
    assert (s.port, s.kafka_bootstrap, s.database_url) == (
        9001,
        "127.0.0.1:19092",
        "postgresql+asyncpg://x@y/z",
    )
    assert SECRET not in repr(s)


def test_tests_can_build_settings_directly() -> None:
    s = DemoSettings(database_url="postgresql+asyncpg://x@y/z", auth_secret=SecretStr(SECRET))
    assert s.service_name == "demo"


def test_a_token_carries_its_subject_and_scopes() -> None:
    actor = verify_token(SECRET, issue_token(SECRET, "alice", ["team:payments"]))
    assert actor == Actor("alice", frozenset({"team:payments"}))
    assert actor.has("team:payments") and not actor.has("team:search")


def test_admin_covers_every_scope() -> None:
    assert Actor("root", frozenset({"admin"})).has("team:anything")


@pytest.mark.parametrize(
    "token, reason",
    [
        (issue_token("x" * 40, "mallory", ["admin"]), "Signature"),
        (issue_token(SECRET, "late", ["admin"], ttl_seconds=-10), "expired"),
    ],
)
def test_forged_or_expired_tokens_are_refused(token: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        verify_token(SECRET, token)


def _app() -> FastAPI:
    app = FastAPI()
    app.state.settings = DemoSettings(
        database_url="postgresql+asyncpg://x@y/z", auth_secret=SecretStr(SECRET)
    )

    @app.post("/things")
    async def write(actor: Actor = Depends(requires("team:payments"))) -> dict[str, str]:
        return {"actor": actor.subject}

    return app


async def test_write_endpoints_answer_401_403_or_record_the_actor() -> None:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        assert (await client.post("/things")).status_code == 401
        bad = await client.post("/things", headers={"Authorization": "Bearer nonsense"})
        assert bad.status_code == 401 and "invalid token" in bad.json()["detail"]
        other = issue_token(SECRET, "bob", ["team:search"])
        denied = await client.post("/things", headers={"Authorization": f"Bearer {other}"})
        assert denied.status_code == 403 and "team:payments" in denied.json()["detail"]
        ok = issue_token(SECRET, "alice", ["team:payments"])
        mine = await client.post("/things", headers={"Authorization": f"Bearer {ok}"})
        assert mine.json() == {"actor": "alice"}


def _example_secret() -> str:
    from ooda.testing import REPO

    example = (REPO / "deploy" / "compose" / ".env.example").read_text()
    return next(
        line.split("=", 1)[1]
        for line in example.splitlines()
        if line.startswith("OODA_AUTH_SECRET=")
    )


@pytest.mark.parametrize(
    "secret",
    [_example_secret(), "change-me-change-me-change-me-change-me", "placeholder-" + "0" * 30],
)
def test_an_example_or_placeholder_secret_stops_start_up_naming_the_variable(
    secret: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DEMO_DATABASE_URL", "postgresql+asyncpg://x@y/z")
    monkeypatch.setenv("OODA_AUTH_SECRET", secret)
    with pytest.raises(SystemExit):
        load_settings(DemoSettings)
    err = capsys.readouterr().err
    assert "OODA_AUTH_SECRET" in err and "example or placeholder" in err
    assert secret not in err
