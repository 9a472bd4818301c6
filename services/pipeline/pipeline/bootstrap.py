"""The composition root: builds the pipeline's collaborators from Settings, in one place."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from ooda.auth import issue_token
from pipeline.artifacts import ArtifactStore
from pipeline.cmdb import Cmdb, HttpCmdb
from pipeline.config import Settings
from pipeline.driver import Driver, LocalDriver, check_interpreter, workload_user
from pipeline.executor import Executor
from pipeline.gates import Limits, MetricGate, MonitorGate, limits_from
from pipeline.liveness import ACTOR
from pipeline.ssh_driver import CmdbHosts, SshDriver

log = logging.getLogger(__name__)

DEPLOY_SCOPE = "deploy"  # what the monitor asks of those who announce instances to scrape


@dataclass
class Components:
    """The pipeline's collaborators beyond the shared runtime (kept on `app.state.pipeline`)."""

    settings: Settings
    cmdb: Cmdb
    driver: Driver
    artifacts: ArtifactStore
    gates: list[MetricGate] = field(default_factory=list)
    executor: Executor | None = None

    def wake(self) -> None:
        """Nudge the executor to look at the queues now."""
        if self.executor is not None:
            self.executor.wake()


def build(
    settings: Settings,
    cmdb: Cmdb | None = None,
    driver: Driver | None = None,
    gates: Sequence[MetricGate] = (),
) -> Components:
    """Collaborators from settings; tests pass a fake CMDB, driver or gates instead."""
    data_dir = settings.data_dir.resolve()
    cmdb = cmdb or HttpCmdb(settings.cmdb_url)
    chosen = list(gates)
    if settings.monitor_url:
        chosen.append(monitor_gate(settings, cmdb))
    return Components(
        settings=settings,
        cmdb=cmdb,
        driver=driver or runtime_driver(settings),
        artifacts=ArtifactStore(data_dir),
        gates=chosen,
    )


def runtime_driver(settings: Settings) -> Driver:
    """The driver `settings.driver` names: local processes, or the CMDB's hosts over SSH."""
    if settings.driver == "ssh":
        assert settings.ssh_key_path is not None and settings.ssh_known_hosts is not None
        return SshDriver(
            CmdbHosts(settings.cmdb_url, settings.ssh_user),
            client_key=settings.ssh_key_path,
            known_hosts=settings.ssh_known_hosts,
            remote_dir=settings.ssh_remote_dir,
            python=settings.ssh_python,
            bind=settings.ssh_bind,
            stop_timeout_s=settings.stop_timeout_seconds,
            connect_timeout_s=settings.ssh_connect_timeout_seconds,
        )
    user = workload_user(settings.workload_user)
    check_interpreter(settings.python, user)
    return LocalDriver(
        settings.data_dir.resolve(),
        settings.python,
        stop_timeout_s=settings.stop_timeout_seconds,
        user=user,
    )


def monitor_gate(settings: Settings, cmdb: Cmdb) -> MonitorGate:
    """The metric gate on the monitor at `settings.monitor_url`, limits from the app's spec."""
    assert settings.monitor_url is not None

    async def limits(app: str) -> Limits:
        try:
            spec = await cmdb.spec(app)
            slo = (spec.slo_availability, spec.slo_latency_p99_ms)
        except Exception as error:  # the settings' limits still apply without the CMDB
            log.warning("metric gate: no spec of %s (%s); settings' limits only", app, error)
            slo = (None, None)
        return limits_from(slo, settings.gate_max_error_rate, settings.gate_max_latency_p99_ms)

    secret = settings.token_secret()

    def token() -> str:
        # The pipeline's own short-lived `deploy` token: it announces new instances to scrape.
        return issue_token(secret, ACTOR, [DEPLOY_SCOPE], ttl_seconds=300, audience="monitor")

    return MonitorGate(
        settings.monitor_url, limits, observe_s=settings.gate_observe_seconds, token=token
    )
