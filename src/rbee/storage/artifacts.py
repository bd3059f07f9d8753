"""Binary results (videos, images, speech) kept on the queen's disk.

One folder, `<state_dir>/artifacts/`: each artifact is its bytes (`<id>`) and a small JSON
sidecar (`<id>.json`: media type, size, owner, creation time). No database table: the files
are the truth, so a sidecar can never describe bytes that are gone (or the reverse) after a
crash, and no schema migration is needed.

Nothing half-written is ever visible: bytes go to a hidden temp name (`.<id>.part`) and are
renamed into place only when whole, the sidecar last (an artifact exists once its sidecar
does); a failed or cancelled write removes its temp file. `purge` also sweeps temp files a
crashed queen left behind.

Readers get the path and stream it (`open`); nothing here reads a whole file into memory.

Owners: a job's artifacts are owned by its job id (deleting the job deletes them, and the job
says whose they are). A synchronous request (an image with response_format url) has no job:
its artifacts are owned by `request:<id>` and the sidecar keeps the caller's tenant, which is
what the download checks for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import uuid
from collections.abc import AsyncIterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

from rbee.core.clock import Clock
from rbee.core.errors import NotFound

_ID = re.compile(r"^art_[0-9a-f]{32}$")
_SIDE = ".json"
_PART = ".part"
_REQUEST = "request:"


def request_owner() -> str:
    """A new owner for a synchronous request's artifacts (no job: the tenant decides)."""
    return f"{_REQUEST}{uuid.uuid4().hex}"


class ArtifactNotFound(NotFound):
    code = "artifact_not_found"


class ArtifactTooLarge(RuntimeError):
    """A put went past its size bound: nothing was stored."""


@dataclass(frozen=True)
class Artifact:
    id: str
    media_type: str
    bytes: int
    created_at: float
    owner: str  # who it belongs to (a job id): deleting the owner deletes its artifacts
    filename: str  # a name for downloads (Content-Disposition)
    tenant: str | None = None  # a request's artifact: the tenant id it belongs to

    @property
    def of_job(self) -> bool:
        """Whether a job owns it (the job's tenant decides who sees it), not a request."""
        return not self.owner.startswith(_REQUEST)

    @property
    def url(self) -> str:
        return f"/v1/artifacts/{self.id}"


def gone(artifact_id: str, param: str = "artifact_id") -> ArtifactNotFound:
    """What a download of an artifact deleted meanwhile answers: as if there were none."""
    return ArtifactNotFound(f"no artifact {artifact_id!r}", param=param)


class ArtifactStore:
    def __init__(self, root: Path, clock: Clock) -> None:
        self.root = root
        self._clock = clock

    def _path(self, artifact_id: str) -> Path:
        if not _ID.match(artifact_id):  # ids come from URLs: never a path outside root
            raise ArtifactNotFound(f"no artifact {artifact_id[:80]!r}", param="artifact_id")
        return self.root / artifact_id

    async def put(self, chunks: AsyncIterable[bytes], *, media_type: str, owner: str,
                  filename: str, max_bytes: int | None = None,
                  tenant: str | None = None) -> Artifact:
        """Store the bytes as they come; the artifact exists only once they all arrived."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        artifact_id = f"art_{uuid.uuid4().hex}"
        part = self.root / f".{artifact_id}{_PART}"
        size = 0
        try:
            with part.open("xb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise ArtifactTooLarge(f"more than {max_bytes} bytes")
                    out.write(chunk)  # into the page cache: no wait worth a thread
                meta = Artifact(artifact_id, media_type, size, self._clock.time(), owner,
                                filename, tenant)
                # fsync can take a while on a big file: not on the event loop. A cancel
                # meanwhile waits for the thread, so the cleanup below runs after it.
                sealing = asyncio.ensure_future(asyncio.to_thread(self._seal, out, part, meta))
                try:
                    await asyncio.shield(sealing)
                finally:
                    if not sealing.done():
                        await asyncio.wait({sealing})
        except BaseException:  # cancelled, failed, too large: leave nothing behind
            for path in (part, self.root / artifact_id, self.root / f"{artifact_id}{_SIDE}"):
                path.unlink(missing_ok=True)
            raise
        return meta

    def _seal(self, out: BinaryIO, part: Path, meta: Artifact) -> None:
        """Make the bytes durable, rename them into place, then write the sidecar (from then
        on the artifact exists)."""
        out.flush()
        os.fsync(out.fileno())
        os.replace(part, self.root / meta.id)
        side = self.root / f".{meta.id}{_SIDE}{_PART}"
        side.write_text(json.dumps(asdict(meta)))
        os.replace(side, self.root / f"{meta.id}{_SIDE}")

    def get(self, artifact_id: str) -> Artifact:
        side = self._path(artifact_id).with_name(f"{artifact_id}{_SIDE}")
        try:
            data = json.loads(side.read_text())
        except (OSError, ValueError):
            raise ArtifactNotFound(f"no artifact {artifact_id!r}", param="artifact_id") from None
        return Artifact(**data)

    def open(self, artifact_id: str) -> tuple[Artifact, Path]:
        """The artifact and the path of its bytes, to stream from."""
        meta = self.get(artifact_id)
        path = self._path(artifact_id)
        if not path.is_file():
            raise ArtifactNotFound(f"no artifact {artifact_id!r}", param="artifact_id")
        return meta, path

    def delete(self, artifact_id: str) -> bool:
        """Remove an artifact (sidecar first: from then on it does not exist); False if there
        was none."""
        path = self._path(artifact_id)
        side = path.with_name(f"{artifact_id}{_SIDE}")
        existed = side.exists()
        side.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        return existed

    def delete_owned(self, owner: str) -> int:
        """Remove every artifact of `owner` (a deleted job); how many there were."""
        return sum(self.delete(a.id) for a in self.list() if a.owner == owner)

    def list(self) -> list[Artifact]:
        found: list[Artifact] = []
        if not self.root.is_dir():
            return found
        for side in self.root.glob(f"art_*{_SIDE}"):
            with contextlib.suppress(ArtifactNotFound):
                found.append(self.get(side.name.removesuffix(_SIDE)))
        return found

    def purge(self, older_than: float) -> int:
        """Remove artifacts created before `older_than` (a clock time), and temp files and
        orphaned bytes a crashed queen left; how many artifacts went."""
        if not self.root.is_dir():
            return 0
        removed = sum(self.delete(a.id) for a in self.list() if a.created_at < older_than)
        for path in self.root.iterdir():
            stale = path.name.startswith(".") and path.name.endswith(_PART)
            orphan = _ID.match(path.name) and not path.with_name(path.name + _SIDE).exists()
            if (stale or orphan) and path.stat().st_mtime < older_than:
                path.unlink(missing_ok=True)
        return removed
