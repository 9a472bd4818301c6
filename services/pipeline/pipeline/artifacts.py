"""A content-addressed artifact store (sha256) and the per-host caches instances start from."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.metrics import ARTIFACT_DISTRIBUTION_SECONDS

SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ArtifactError(ValueError):
    """An artifact that is missing, or whose content does not match its digest."""


@dataclass(frozen=True)
class Distributed:
    """An artifact placed on a host: where it is, and how long placing it took."""

    path: Path
    seconds: float
    copied: bool


def sha256_of(path: Path) -> str:
    """The hex sha256 digest of a file's content."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def normalise_digest(text: str) -> str:
    """`sha256:<hex>` or `<hex>` as lower-case hex; raise ArtifactError otherwise."""
    digest = text.strip().lower().removeprefix("sha256:")
    if not SHA256.match(digest):
        raise ArtifactError(f"{text!r} is not a sha256 digest (64 hex digits)")
    return digest


class ArtifactStore:
    """Artifacts under `<data_dir>/artifacts/<sha256>`, copied into a cache per host on demand."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "artifacts"
        self.hosts = data_dir / "hosts"
        self._verified: dict[Path, tuple[int, int]] = {}

    def path(self, sha: str) -> Path:
        """Where the store keeps the artifact `sha`."""
        return self.root / f"{normalise_digest(sha)}.pyz"

    def save(self, data: bytes, claimed: str | None = None) -> tuple[str, int, Path]:
        """Store `data` under its digest (checked against `claimed`); return digest, size, path."""
        sha = hashlib.sha256(data).hexdigest()
        if claimed is not None and normalise_digest(claimed) != sha:
            raise ArtifactError(f"content has sha256 {sha}, not the claimed {claimed}")
        path = self.path(sha)
        if not path.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, delete=False) as tmp:
                tmp.write(data)
            os.replace(tmp.name, path)
        return sha, len(data), path

    def verify(self, path: Path, sha: str) -> None:
        """Raise ArtifactError unless the file at `path` has digest `sha` (cached by size+mtime)."""
        if not path.exists():
            raise ArtifactError(f"artifact {sha} is not in the store")
        stat = path.stat()
        key = (stat.st_size, stat.st_mtime_ns)
        if self._verified.get(path) == key:
            return
        actual = sha256_of(path)
        if actual != sha:
            raise ArtifactError(f"artifact {path} has sha256 {actual}, expected {sha}")
        self._verified[path] = key

    def on_host(self, sha: str, host: str) -> Distributed:
        """The artifact in `host`'s cache, copied there first if absent; verified either way."""
        sha = normalise_digest(sha)
        began = time.perf_counter()
        cached = self.hosts / _safe(host) / "artifacts" / f"{sha}.pyz"
        copied = False
        if not cached.exists():
            source = self.path(sha)
            self.verify(source, sha)
            cached.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=cached.parent, delete=False) as tmp:
                pass
            shutil.copyfile(source, tmp.name)
            os.chmod(tmp.name, 0o644)  # read by instances, which may run as another user
            os.replace(tmp.name, cached)
            copied = True
        if cached.stat().st_mode & 0o444 != 0o444:
            # Instances may run as another user; copies made before this rule were private.
            cached.chmod(0o644)
        self.verify(cached, sha)
        seconds = time.perf_counter() - began
        ARTIFACT_DISTRIBUTION_SECONDS.labels(copied=str(copied).lower()).observe(seconds)
        return Distributed(cached, seconds, copied)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)
