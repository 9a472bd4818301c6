"""The artifact store and the CMDB mapping (the store on a temporary directory)."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pytest

from pipeline import driver as driver_module
from pipeline.artifacts import ArtifactError, ArtifactStore
from pipeline.cmdb import host_from_json, spec_from_json
from pipeline.driver import workload_user

pytestmark = pytest.mark.unit


def test_an_artifact_is_stored_under_its_digest_and_a_wrong_claim_is_refused(
    tmp_path: Path,
) -> None:
    store = ArtifactStore(tmp_path)
    data = b"print('hello')"
    digest = hashlib.sha256(data).hexdigest()
    sha, size, path = store.save(data, claimed=f"sha256:{digest.upper()}")
    assert (sha, size, path.read_bytes()) == (digest, len(data), data)
    with pytest.raises(ArtifactError, match="not the claimed"):
        store.save(data, claimed="0" * 64)
    with pytest.raises(ArtifactError, match="not a sha256"):
        store.save(data, claimed="abc")


def test_an_artifact_is_copied_to_a_host_once_and_verified_before_use(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    sha, _, _ = store.save(b"payload")
    first = store.on_host(sha, "host-a")
    second = store.on_host(sha, "host-a")
    other = store.on_host(sha, "host-b")
    assert (first.copied, second.copied, other.copied) == (True, False, True)
    assert first.path == second.path != other.path
    # Instances may run as another user: they read the host's copy.
    assert first.path.stat().st_mode & 0o777 == 0o644
    other.path.write_bytes(b"tampered")
    with pytest.raises(ArtifactError, match="expected"):
        store.on_host(sha, "host-b")
    with pytest.raises(ArtifactError, match="not in the store"):
        store.on_host("1" * 64, "host-a")


def test_cmdb_items_become_hosts_with_free_room_and_a_spec() -> None:
    host = host_from_json(
        {
            "id": "h1",
            "zone_id": "z1",
            "pool_id": "p1",
            "cpu_millis": 4000,
            "memory_mib": 8192,
            "allocated": {"cpu_millis": 1500, "memory_mib": 1024},
        }
    )
    assert (host.zone, host.pool, host.free.cpu, host.free.memory_mb) == ("z1", "p1", 2.5, 7168)
    spec = spec_from_json(
        "shop",
        "team-a",
        {
            "revision": 4,
            "version": "v2",
            "artifact": "ab" * 32,
            "replicas": {"min": 1, "max": 9, "desired": 3},
            "resources": {"cpu_millis": 250, "memory_mib": 128},
            "health_check": {"path": "/readyz", "timeout_seconds": 7},
            "unknown": "ignored",
        },
    )
    assert (spec.replicas, spec.resources.cpu, spec.health_timeout_s) == (3, 0.25, 7)


def test_without_root_instances_run_as_the_pipelines_user_and_it_says_so_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    driver_module._warn_same_user.cache_clear()
    with caplog.at_level(logging.WARNING, logger="pipeline.driver"):
        assert workload_user("ooda-workload") is None
        assert workload_user("ooda-workload") is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "instances run as its own user (uid 1000)" in warnings[0]


def test_root_is_never_the_workload_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with pytest.raises(ValueError, match="must not be root"):
        workload_user("root")
