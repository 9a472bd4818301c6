"""The compose stack for users with Docker: its structure holds together without running it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import jsonschema
import pytest
import yaml

from ooda.testing import REPO, SERVICES, TOKEN_SERVICES

pytestmark = pytest.mark.unit
COMPOSE = REPO / "deploy" / "compose"
ONE_SHOT = {"kafka-init"}


def load() -> dict:
    return yaml.safe_load((COMPOSE / "compose.yml").read_text())


def test_every_long_running_container_has_a_healthcheck_and_dependents_wait_for_it() -> None:
    services = load()["services"]
    for name, svc in services.items():
        if name not in ONE_SHOT:
            assert "healthcheck" in svc, f"{name} has no healthcheck"
        for dep, cond in svc.get("depends_on", {}).items():
            expected = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert cond == {"condition": expected}, f"{name} -> {dep}"


def test_all_five_services_are_built_from_the_repo_and_every_build_input_exists() -> None:
    services = load()["services"]
    for name in SERVICES:
        build = services[name]["build"]
        assert build["args"] == {"SERVICE": name}
        assert (COMPOSE / build["context"] / build["dockerfile"]).is_file()
        assert (REPO / "services" / name / "pyproject.toml").is_file()
    dockerfile = (COMPOSE / "Dockerfile").read_text()
    for copied in re.findall(r"^COPY (\S+)", dockerfile, re.M):
        assert (REPO / copied).exists(), f"Dockerfile copies missing {copied}"


def test_host_ports_do_not_clash_and_stay_on_loopback() -> None:
    published = []
    for svc in load()["services"].values():
        for mapping in svc.get("ports", []):
            resolved = re.sub(r"\$\{[A-Z_]+:-(\d+)\}", r"\1", mapping)
            host, port, _ = resolved.split(":")
            assert host == "127.0.0.1", mapping
            published.append(port)
    assert len(published) == len(set(published)), published


def test_every_variable_the_stack_reads_is_listed_in_env_example() -> None:
    text = (COMPOSE / "compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))
    example = (COMPOSE / ".env.example").read_text()
    listed = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", example, re.M))
    assert used <= listed, f"missing from .env.example: {sorted(used - listed)}"


def test_services_get_every_required_setting_from_the_environment() -> None:
    services = load()["services"]
    for name in SERVICES:
        env = services[name]["environment"]
        for key in (f"{name.upper()}_DATABASE_URL", "OODA_KAFKA_BOOTSTRAP"):
            assert key in env, f"{name} lacks {key}"
        assert env[f"{name.upper()}_HOST"] == "0.0.0.0"
        # Its own Kafka principal; the token secret only where tokens are verified.
        assert env["OODA_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
        assert env["OODA_KAFKA_USERNAME"] == name
        assert env["OODA_KAFKA_PASSWORD"].startswith(f"${{{name.upper()}_KAFKA_PASSWORD")
        assert ("OODA_AUTH_SECRET" in env) == (name in TOKEN_SERVICES), name


def test_kafka_init_reads_the_topic_list_and_acls_that_deploy_local_uses() -> None:
    mounts = {
        m.split(":")[1]: (COMPOSE / m.split(":")[0]).resolve()
        for m in load()["services"]["kafka-init"]["volumes"]
    }
    assert mounts["/topics.txt"] == (REPO / "deploy" / "local" / "topics.txt").resolve()
    assert mounts["/acls.txt"] == (REPO / "deploy" / "local" / "acls.txt").resolve()
    assert mounts["/ooda/init.sh"].is_file()


def test_grafana_is_provisioned_with_the_generated_dashboards_and_prometheus() -> None:
    grafana = load()["services"]["grafana"]
    mounts = {
        m.split(":")[1]: (COMPOSE / m.split(":")[0]).resolve()
        for m in grafana["volumes"]
        if m.startswith("..")
    }
    dashboards = mounts["/var/lib/grafana/dashboards"]
    assert sorted(p.name for p in dashboards.glob("*.json")) == [
        "capacity-and-budget.json",
        "loop-overview.json",
        "platform-health.json",
    ]
    provisioning = mounts["/etc/grafana/provisioning"]
    source = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    assert source["datasources"][0]["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((provisioning / "dashboards" / "ooda.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    config = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {"ooda-services", "ooda-instances"} <= jobs


SCHEMA = REPO / "tools" / "compose-spec" / "compose-spec.json"


def compose_validator() -> jsonschema.protocols.Validator:
    assert SCHEMA.is_file(), f"{SCHEMA} is missing: run tools/bootstrap.sh (make venv)"
    schema = json.loads(SCHEMA.read_text())
    return jsonschema.validators.validator_for(schema)(schema)


def test_the_file_is_valid_against_the_compose_specification_schema() -> None:
    errors = sorted(compose_validator().iter_errors(load()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_check_rejects_a_broken_file() -> None:
    broken = load()
    dependency = next(iter(broken["services"]["cmdb"]["depends_on"]))
    broken["services"]["cmdb"]["depends_on"][dependency] = {"condition": "service_ready"}
    broken["services"]["monitor"]["restart_when"] = "always"  # no such field
    messages = [e.message for e in compose_validator().iter_errors(broken)]
    assert any("restart_when" in m for m in messages), messages
    assert any("service_ready" in m for m in messages), messages


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="the docker compose plugin is not installed here; the schema check above stands in",
)
def test_docker_compose_accepts_the_file() -> None:
    result = subprocess.run(
        ["docker", "compose", "--env-file", str(COMPOSE / ".env.example"), "config", "--quiet"],
        cwd=COMPOSE,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
