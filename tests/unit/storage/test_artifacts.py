"""The artifact store: whole or nothing on disk, open/delete/purge, ids that cannot leave
its folder."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rbee.core.clock import FakeClock
from rbee.storage.artifacts import (
    ArtifactNotFound,
    ArtifactStore,
    ArtifactTooLarge,
    request_owner,
)


async def _chunks(*parts: bytes, fail: bool = False) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    if fail:
        raise ConnectionError("cut")


def _store(tmp_path: Path) -> tuple[ArtifactStore, FakeClock]:
    clock = FakeClock()
    return ArtifactStore(tmp_path / "artifacts", clock), clock


async def test_put_then_open_streams_the_bytes_back(tmp_path: Path) -> None:
    store, _ = _store(tmp_path)
    art = await store.put(_chunks(b"ab", b"cd"), media_type="video/mp4", owner="job-1",
                          filename="job-1.mp4")
    meta, path = store.open(art.id)
    assert (meta, path.read_bytes(), art.url) == (art, b"abcd", f"/v1/artifacts/{art.id}")
    assert art.bytes == 4


@pytest.mark.parametrize("too_large", [False, True])
async def test_a_failed_or_oversized_put_leaves_nothing(tmp_path: Path, too_large: bool
                                                        ) -> None:
    store, _ = _store(tmp_path)
    error = ArtifactTooLarge if too_large else ConnectionError
    with pytest.raises(error):
        await store.put(_chunks(b"x" * 10, fail=not too_large), media_type="video/mp4",
                        owner="job", filename="f", max_bytes=5 if too_large else None)
    assert list((tmp_path / "artifacts").iterdir()) == []


async def test_delete_owned_and_purge(tmp_path: Path) -> None:
    store, clock = _store(tmp_path)
    old = await store.put(_chunks(b"1"), media_type="m", owner="a", filename="f")
    clock.advance(100)
    new = await store.put(_chunks(b"2"), media_type="m", owner="b", filename="f")
    assert store.purge(older_than=clock.time() - 50) == 1
    with pytest.raises(ArtifactNotFound):
        store.open(old.id)
    assert store.delete_owned("b") == 1 and store.list() == []
    assert not store.delete(new.id)


@pytest.mark.parametrize("bad", ["../queen.db", "art_/etc/passwd", "", "art_" + "g" * 32])
def test_hostile_ids_are_not_found(tmp_path: Path, bad: str) -> None:
    store, _ = _store(tmp_path)
    with pytest.raises(ArtifactNotFound) as err:
        store.open(bad)
    assert err.value.param == "artifact_id"


async def test_a_cancelled_put_leaves_nothing(tmp_path: Path) -> None:
    store, _ = _store(tmp_path)
    arrived = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"first"
        arrived.set()
        await asyncio.Event().wait()  # the rest never comes: the job is cancelled
        yield b"never"

    put = asyncio.create_task(store.put(slow(), media_type="video/mp4", owner="job",
                                        filename="f"))
    await arrived.wait()
    put.cancel()
    with pytest.raises(asyncio.CancelledError):
        await put
    assert list((tmp_path / "artifacts").iterdir()) == []


async def test_a_requests_artifact_keeps_its_tenant_and_an_old_sidecar_still_reads(
        tmp_path: Path) -> None:
    store, _ = _store(tmp_path)
    owner = request_owner()
    art = await store.put(_chunks(b"png"), media_type="image/png", owner=owner,
                          filename="a.png", tenant="ten-1")
    job = await store.put(_chunks(b"mp4"), media_type="video/mp4", owner="job-1",
                          filename="job-1.mp4")
    assert (store.get(art.id).tenant, store.get(art.id).of_job) == ("ten-1", False)
    assert (store.get(job.id).tenant, store.get(job.id).of_job) == (None, True)
    assert owner != request_owner()  # each request owns its own
    side = store.root / f"{job.id}.json"  # written before tenants were recorded
    data = json.loads(side.read_text())
    del data["tenant"]
    side.write_text(json.dumps(data))
    assert store.get(job.id) == job
    assert store.delete_owned(owner) == 1 and [a.id for a in store.list()] == [job.id]
