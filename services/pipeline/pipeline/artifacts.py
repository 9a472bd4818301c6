"""A content-addressed artifact store (sha256) and the per-host caches instances start from."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

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


@dataclass(frozen=True)
class Staged:
    """An upload written to a temporary file in the store, not yet placed under its digest."""

    path: Path
    sha: str
    size: int


STAGING_PREFIX = "upload-"
_FLUSH_BYTES = 1 << 20


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

    def _staging_file(self) -> BinaryIO:
        self.root.mkdir(parents=True, exist_ok=True)
        # Closed (or removed) by `receive`: it outlives this call.
        staging = tempfile.NamedTemporaryFile(  # noqa: SIM115
            dir=self.root, prefix=STAGING_PREFIX, delete=False
        )
        return cast(BinaryIO, staging)

    async def receive(self, chunks: AsyncIterator[bytes]) -> Staged:
        """Write a streamed upload to a staging file as it arrives, hashing it on the way; the
        file is removed if the stream fails (e.g. refused past the body limit)."""
        file = await asyncio.to_thread(self._staging_file)
        digest = hashlib.sha256()
        size = 0
        pending = bytearray()

        def flush(data: bytes) -> None:
            digest.update(data)
            file.write(data)

        try:
            async for chunk in chunks:
                pending += chunk
                size += len(chunk)
                if len(pending) >= _FLUSH_BYTES:
                    await asyncio.to_thread(flush, bytes(pending))
                    pending.clear()
            await asyncio.to_thread(flush, bytes(pending))
            await asyncio.to_thread(file.close)
        except BaseException:
            _discard(file)
            raise
        return Staged(Path(file.name), digest.hexdigest(), size)

    def place(self, staged: Staged) -> Path:
        """Move a staged upload under its digest (kept as it is if the store has it already)."""
        path = self.path(staged.sha)
        if path.exists():
            staged.path.unlink(missing_ok=True)
        else:
            os.replace(staged.path, path)
        return path

    def remove(self, sha: str) -> None:
        """Delete the artifact `sha` from the store and from every host's cache."""
        sha = normalise_digest(sha)
        self.path(sha).unlink(missing_ok=True)
        self._verified.pop(self.path(sha), None)
        if self.hosts.is_dir():
            for cached in self.hosts.glob(f"*/artifacts/{sha}.pyz"):
                cached.unlink(missing_ok=True)
                self._verified.pop(cached, None)

    def stored(self) -> list[tuple[str | None, Path, float]]:
        """Every file of the store: its digest (None for a staging or foreign file), path and
        modification time (seconds since the epoch)."""
        if not self.root.is_dir():
            return []
        found: list[tuple[str | None, Path, float]] = []
        for path in self.root.iterdir():
            try:
                if not path.is_file():
                    continue
                mtime = path.stat().st_mtime
            except FileNotFoundError:
                continue
            digest = path.name.removesuffix(".pyz")
            found.append((digest if SHA256.match(digest) else None, path, mtime))
        return found

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


def _discard(file: BinaryIO) -> None:
    file.close()
    Path(file.name).unlink(missing_ok=True)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)
