"""deploy/local starts each service with its own variables only, never the whole env file (whose
database passwords, token secret and Kafka credentials a compromised service could otherwise read
from its own environment)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ooda.testing import REPO, SERVICES, TOKEN_SERVICES

pytestmark = pytest.mark.unit
SCRIPT = REPO / "deploy" / "local" / "ooda-local"


def env_file(folder: Path) -> None:
    lines = [
        "OODA_KAFKA_BOOTSTRAP=127.0.0.1:9092",
        "OODA_KAFKA_USERNAME=ooda-admin",
        "OODA_KAFKA_PASSWORD=admin-secret",
        "OODA_KAFKA_BROKER_PASSWORD=broker-secret",
        "OODA_AUTH_SECRET=token-secret",
        "OODA_AUTH_REVOCATIONS=/tmp/revoked",
        "OODA_PG_ADMIN_URL=postgresql://postgres:pg@127.0.0.1:5432/postgres",
    ]
    for name in (*SERVICES, "ooda_test"):
        lines.append(f"{name.upper()}_DATABASE_URL=postgresql+asyncpg://{name}:pw@h/{name}")
    for name in SERVICES:
        lines += [
            f"{name.upper()}_KAFKA_USERNAME={name}",
            f"{name.upper()}_KAFKA_PASSWORD=k-{name}",
        ]
    (folder / "ooda.env").write_text("\n".join(lines) + "\n")


def started_with(folder: Path, service: str, **caller: str) -> set[str]:
    env = {"PATH": os.environ["PATH"], "OODA_LOCAL_DIR": str(folder)} | caller
    result = subprocess.run(
        [str(SCRIPT), "service-env", service], env=env, capture_output=True, text=True, check=True
    )
    return set(result.stdout.split())


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_gets_its_own_database_and_principal_and_nothing_of_the_others(
    tmp_path: Path, service: str
) -> None:
    env_file(tmp_path)
    up = service.upper()
    names = started_with(
        tmp_path,
        service,
        **{f"{up}_SOME_SETTING": "1", "PIPELINE_OTHER_SETTING": "1", "CMDB_KAFKA_PASSWORD": "x"},
    )
    assert {f"{up}_DATABASE_URL", f"{up}_SOME_SETTING", "OODA_KAFKA_USERNAME"} <= names
    assert {"OODA_KAFKA_PASSWORD", "OODA_KAFKA_SECURITY_PROTOCOL"} <= names
    others = {f"{o.upper()}_DATABASE_URL" for o in (*SERVICES, "ooda_test") if o != service}
    secrets = {"OODA_PG_ADMIN_URL", "OODA_KAFKA_BROKER_PASSWORD", "CMDB_KAFKA_PASSWORD"}
    assert not names & (others | secrets | {f"{up}_KAFKA_PASSWORD"})
    verifies_tokens = service in TOKEN_SERVICES
    assert ("OODA_AUTH_SECRET" in names) == verifies_tokens
    assert ("OODA_AUTH_REVOCATIONS" in names) == verifies_tokens
    assert ("PIPELINE_OTHER_SETTING" in names) == (service == "pipeline")
