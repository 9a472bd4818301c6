"""Settings of the pipeline service, read from `PIPELINE_*` and `OODA_*` environment variables."""

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from ooda.settings import ServiceSettings


class Settings(ServiceSettings):
    """Environment of the pipeline service."""

    model_config = SettingsConfigDict(env_prefix="PIPELINE_", extra="ignore")

    service_name: str = "pipeline"
    port: int = 8002
    cmdb_url: str = Field("http://127.0.0.1:8001", description="base URL of the CMDB's HTTP API")
    data_dir: Path = Field(
        Path(".local/pipeline"), description="artifacts, per-host caches and instance logs"
    )
    executor_poll_seconds: float = Field(0.5, gt=0, description="how often queues are looked at")
    health_timeout_seconds: float = Field(
        30.0, gt=0, description="readiness timeout when the spec names none"
    )
    liveness_seconds: float = Field(
        1.0, gt=0, description="how often the instances of idle applications are checked"
    )
    liveness_grace_seconds: float = Field(
        5.0,
        ge=0,
        description="how long an instance must stay dead before a change replaces it",
    )
    stop_timeout_seconds: float = Field(10.0, gt=0, description="SIGTERM grace before SIGKILL")
    default_batch_percent: int = Field(
        34, ge=1, le=100, description="batch size of changes that name none (change-requested)"
    )
    artifact_max_bytes: int = Field(
        200 * 1024 * 1024, gt=0, description="largest artifact upload (413 past it)"
    )
    artifact_quota_bytes: int = Field(
        2 * 1024 * 1024 * 1024,
        gt=0,
        description="bytes of stored artifacts each team may hold (409 past it)",
    )
    artifact_gc_grace_seconds: float = Field(
        7 * 24 * 3600.0,
        ge=0,
        description="how old an unused artifact (and how long ago a change using it ended) must "
        "be before the collector deletes it",
    )
    artifact_gc_interval_seconds: float = Field(
        3600.0, gt=0, description="how often unused artifacts are collected"
    )
    python: str = Field(
        "python3",
        description="interpreter that runs artifacts (local driver), found on the workloads' PATH "
        "(/usr/local/bin:/usr/bin:/bin) unless a path; the workload user must be able to run it",
    )
    workload_user: str = Field(
        "ooda-workload",
        min_length=1,
        description="unprivileged user that instances run as when the pipeline runs as root "
        "(created as a system user if missing)",
    )
    driver: Literal["local", "ssh"] = Field(
        "local", description="where instances run: this machine, or the CMDB's hosts over SSH"
    )
    ssh_user: str = Field(
        "ooda", description="SSH user on hosts without `attributes.ssh_user` (ssh driver)"
    )
    ssh_key_path: Path | None = Field(
        None, description="the private key the ssh driver logs in with (kept outside the repo)"
    )
    ssh_known_hosts: Path | None = Field(
        None, description="known_hosts file the hosts' keys are checked against (ssh driver)"
    )
    ssh_remote_dir: str = Field(
        ".ooda-pipeline",
        description="folder (relative to the SSH user's home) of the supervisor, artifacts and "
        "instances on each host",
    )
    ssh_python: str = Field("python3", description="interpreter on the hosts (ssh driver)")
    ssh_bind: str | None = Field(
        None,
        description="address instances listen on (ssh driver); the host's CMDB address when "
        "unset, e.g. 0.0.0.0 for every interface",
    )
    ssh_connect_timeout_seconds: float = Field(10.0, gt=0, description="SSH connect timeout")
    monitor_url: str | None = Field(
        None,
        description="base URL of the monitor's HTTP API; when set, every batch passes a metric "
        "gate on the application's error rate and p99 latency (off when unset or empty)",
    )
    gate_observe_seconds: float = Field(
        15.0, gt=0, description="how long the metric gate watches the monitor after a batch"
    )
    gate_max_error_rate: float | None = Field(
        None, ge=0, le=1, description="error-rate limit; default 1 - the spec's slo.availability"
    )
    gate_max_latency_p99_ms: float | None = Field(
        None, gt=0, description="p99 latency limit (ms); default the spec's slo.latency_p99_ms"
    )

    @model_validator(mode="after")
    def _ssh_needs_keys(self) -> Self:
        if self.driver == "ssh":
            for name in ("ssh_key_path", "ssh_known_hosts"):
                path = getattr(self, name)
                if path is None or not path.is_file():
                    raise ValueError(
                        f"PIPELINE_{name.upper()} must name a readable file with the ssh "
                        f"driver (got {path})"
                    )
        return self

    @field_validator("monitor_url", "ssh_bind", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value
