"""Settings validation and bearer-token authentication."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import jwt
import pytest
from fastapi import Depends, FastAPI
from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from ooda.auth import SERVICES, Actor, Revocations, issue_token, requires, revoke, verify_token
from ooda.auth import main as token_main
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
    actor = verify_token(
        SECRET, issue_token(SECRET, "alice", ["team:payments"], audience="demo"), "demo"
    )
    assert actor == Actor("alice", frozenset({"team:payments"}))
    assert actor.has("team:payments") and not actor.has("team:search")


def test_admin_covers_every_scope() -> None:
    assert Actor("root", frozenset({"admin"})).has("team:anything")


def _claims_token(
    aud: str | None = "demo",
    jti: str | None = "t1",
    iat_offset: int = 0,
    exp_offset: int = 3600,
) -> str:
    now = int(time.time())
    claims: dict[str, object] = {"sub": "x", "scopes": ["admin"], "iss": "ooda"}
    claims |= {"iat": now + iat_offset, "exp": now + exp_offset}
    claims |= {k: v for k, v in {"aud": aud, "jti": jti}.items() if v is not None}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def test_a_token_for_several_services_is_accepted_by_each_and_only_them() -> None:
    token = issue_token(SECRET, "ci", ["release"], audience=["cmdb", "pipeline"])
    assert verify_token(SECRET, token, "cmdb").subject == "ci"
    assert verify_token(SECRET, token, "pipeline").subject == "ci"
    with pytest.raises(ValueError, match="audience"):
        verify_token(SECRET, token, "monitor")
    everywhere = issue_token(SECRET, "root", ["admin"], audience=SERVICES)
    assert all(verify_token(SECRET, everywhere, s).subject == "root" for s in SERVICES)


def test_clocks_may_disagree_by_the_leeway() -> None:
    ahead = _claims_token(iat_offset=20)  # minted on a machine whose clock is 20 s ahead
    assert verify_token(SECRET, ahead, "demo").subject == "x"
    just_expired = _claims_token(exp_offset=-20)
    assert verify_token(SECRET, just_expired, "demo").subject == "x"
    with pytest.raises(ValueError, match="not yet valid"):
        verify_token(SECRET, ahead, "demo", leeway_seconds=5)


def test_the_lifetime_cap_is_a_setting() -> None:
    week = issue_token(SECRET, "x", [], ttl_seconds=7 * 86400, audience="demo")
    with pytest.raises(ValueError, match="lifetime of 604800 s exceeds the maximum of 86400 s"):
        verify_token(SECRET, week, "demo")
    assert verify_token(SECRET, week, "demo", max_ttl_seconds=7 * 86400).subject == "x"


def test_revoked_tokens_are_refused_by_id_or_by_subject(tmp_path: Path) -> None:
    listing = tmp_path / "revoked"
    revocations = Revocations(listing)
    first = issue_token(SECRET, "alice", ["admin"], audience="demo")
    other = issue_token(SECRET, "bob", ["admin"], audience="demo")
    assert verify_token(SECRET, first, "demo", revocations=revocations).subject == "alice"
    revoke(listing, token_id=jwt.decode(first, options={"verify_signature": False})["jti"])
    with pytest.raises(ValueError, match="revoked"):
        verify_token(SECRET, first, "demo", revocations=revocations)
    assert verify_token(SECRET, other, "demo", revocations=revocations).subject == "bob"
    revoke(listing, subject="bob", before=int(time.time()) + 1)
    with pytest.raises(ValueError, match="revoked"):
        verify_token(SECRET, other, "demo", revocations=revocations)
    later = _claims_token(iat_offset=5)  # subject "x": untouched
    assert verify_token(SECRET, later, "demo", revocations=revocations).subject == "x"


def test_ooda_token_issues_for_the_named_services_and_revokes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OODA_AUTH_SECRET", SECRET)
    monkeypatch.setenv("OODA_AUTH_REVOCATIONS", str(tmp_path / "revoked"))
    token_main(["--subject", "ci", "--scope", "release", "--audience", "pipeline"])
    token = capsys.readouterr().out.strip()
    assert verify_token(SECRET, token, "pipeline").scopes == {"release"}
    with pytest.raises(ValueError, match="audience"):
        verify_token(SECRET, token, "cmdb")
    token_main(["revoke", "--subject", "ci"])
    with pytest.raises(ValueError, match="revoked"):
        verify_token(SECRET, token, "pipeline", revocations=Revocations(tmp_path / "revoked"))
    with pytest.raises(SystemExit):
        token_main(["--subject", "ci", "--audience", "pipeline", "--ttl", str(30 * 86400)])
    assert "maximum" in capsys.readouterr().err


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda: issue_token("x" * 40, "mallory", ["admin"], audience="demo"), "Signature"),
        (
            lambda: issue_token(SECRET, "late", ["admin"], ttl_seconds=-100, audience="demo"),
            "expired",
        ),
        (lambda: issue_token(SECRET, "elsewhere", ["admin"], audience="cmdb"), "audience"),
        (lambda: _claims_token(aud=None), "aud"),
        (lambda: _claims_token(jti=None), "jti"),
        (lambda: _claims_token(iat_offset=120), "not yet valid"),
        (lambda: _claims_token(exp_offset=-40), "expired"),
        (lambda: _claims_token(exp_offset=2 * 86400), "lifetime"),
    ],
)
def test_forged_expired_foreign_or_unbounded_tokens_are_refused(
    make: Callable[[], str], reason: str
) -> None:
    # Minted when the test runs, not when it is collected: the times are relative to now.
    with pytest.raises(ValueError, match=reason):
        verify_token(SECRET, make(), "demo")


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
        other = issue_token(SECRET, "bob", ["team:search"], audience="demo")
        denied = await client.post("/things", headers={"Authorization": f"Bearer {other}"})
        assert denied.status_code == 403 and "team:payments" in denied.json()["detail"]
        ok = issue_token(SECRET, "alice", ["team:payments"], audience="demo")
        mine = await client.post("/things", headers={"Authorization": f"Bearer {ok}"})
        assert mine.json() == {"actor": "alice"}
        foreign = issue_token(SECRET, "alice", ["team:payments"], audience="cmdb")
        refused = await client.post("/things", headers={"Authorization": f"Bearer {foreign}"})
        assert refused.status_code == 401 and "audience" in refused.json()["detail"]


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
