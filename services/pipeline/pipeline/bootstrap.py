"""The composition root: builds the pipeline's collaborators from Settings, in one place."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pipeline.artifacts import ArtifactStore
from pipeline.cmdb import Cmdb, HttpCmdb
from pipeline.config import Settings
from pipeline.driver import Driver, LocalDriver
from pipeline.executor import Executor
from pipeline.gates import MetricGate


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
    return Components(
        settings=settings,
        cmdb=cmdb or HttpCmdb(settings.cmdb_url),
        driver=driver
        or LocalDriver(data_dir, settings.python, stop_timeout_s=settings.stop_timeout_seconds),
        artifacts=ArtifactStore(data_dir),
        gates=list(gates),
    )
