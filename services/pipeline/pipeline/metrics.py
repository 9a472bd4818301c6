"""Prometheus metrics of the pipeline service."""

from prometheus_client import Counter, Gauge, Histogram

ARTIFACT_DISTRIBUTION_SECONDS = Histogram(
    "pipeline_artifact_distribution_seconds",
    "Time to place a verified artifact on a host (copied=false: it was cached already).",
    ["copied"],
)
BATCH_SECONDS = Histogram(
    "pipeline_batch_seconds",
    "Time to run one batch, by phase.",
    ["phase"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
CHANGES_FINISHED = Counter(
    "pipeline_changes_finished_total", "Changes that reached an outcome.", ["kind", "outcome"]
)
INSTANCES_STARTED = Counter("pipeline_instances_started_total", "Instances started by a driver.")
INSTANCES_STOPPED = Counter("pipeline_instances_stopped_total", "Instances stopped by a driver.")
ARTIFACT_BYTES = Gauge(
    "pipeline_artifact_bytes",
    "Bytes of stored artifacts counted against each team's quota.",
    ["team"],
)
ARTIFACT_UPLOADS_REFUSED = Counter(
    "pipeline_artifact_uploads_refused_total",
    "Artifact uploads refused, by reason (quota, digest, empty).",
    ["reason"],
)
ARTIFACTS_COLLECTED = Counter(
    "pipeline_artifacts_collected_total",
    "Artifacts deleted because no live change or current spec used them past the grace period.",
)
ARTIFACT_BYTES_COLLECTED = Counter(
    "pipeline_artifact_bytes_collected_total", "Bytes freed by the artifact collector."
)
ARTIFACT_GC_RUNS = Counter(
    "pipeline_artifact_gc_runs_total",
    "Artifact collector rounds, by outcome (done, skipped: the CMDB could not be asked).",
    ["outcome"],
)
HEAL_FAILURES = Counter(
    "pipeline_heal_failures_total",
    "Healing changes that could not be requested (logged; retried at the next watch).",
    ["app"],
)
PROBE_FAILURES = Counter(
    "pipeline_probe_failures_total",
    "Liveness probes that failed in themselves (logged; the instance counted as alive).",
)
