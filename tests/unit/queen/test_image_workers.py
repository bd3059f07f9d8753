"""Image workers are workers like any other: placed next to chat and embedding workers on one
device under a memory budget without over-committing it, evicted for (and evicting) the other
kinds, with an estimate from the pipeline folder's safetensors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import pytest

from rbee.api.cluster import WorkerInfo
from rbee.core.errors import WrongModelKind
from rbee.models.catalog import parse_ref, require_kind
from rbee.models.estimate import (
    DEFAULT,
    DIFFUSERS_RUNTIME_BYTES,
    HEADROOM,
    MiB,
    estimate_ref,
)
from rbee.queen.dispatch import Dispatcher, Hints, Silent
from rbee.queen.hive_client import HiveClient
from rbee.queen.policy import _model_table
from rbee.scheduler.placement import PlaceRequest
from tests.unit.queen.test_embedding_workers import KindHives
from tests.unit.queen.test_scheduling import GB, ready, report, rig

CHAT, EMBED, IMAGE = (parse_ref("rbee-fake"), parse_ref("rbee-fake-embedding"),
                      parse_ref("rbee-fake-image"))
SDXL = parse_ref("file:/models/sdxl/")  # a second image model: a pipeline folder
SIZES = {CHAT.name: 3 * GB, EMBED.name: 1 * GB, IMAGE.name: 4 * GB, SDXL.name: 6 * GB}
BUDGET = 9 * GB


def _dispatcher():  # type: ignore[no-untyped-def]
    clock, registry, _, _ = rig({}, budget=BUDGET)
    hives = KindHives(registry)
    dispatcher = Dispatcher(registry, cast(HiveClient, hives), spawn_timeout=5,
                            default_threads=None, estimator=lambda ref: SIZES[ref.name])
    return clock, registry, hives, dispatcher


def _resident(spawned: list[WorkerInfo], stopped: list[str]) -> int:
    return sum(SIZES[w.model] for w in spawned if w.id not in stopped)


async def test_image_chat_and_embedding_workers_share_a_budget_without_over_commit() -> None:
    clock, registry, hives, dispatcher = _dispatcher()
    where = Hints(hive_id="rig", device="cpu")
    spawned: list[WorkerInfo] = []
    for ref in (CHAT, EMBED, IMAGE):  # 3 + 1 + 4 = 8 GB: all three fit in 9
        info = await dispatcher.spawn(ref, where, Silent())
        spawned.append(info)
        clock.advance(60)
        report(registry, "rig", *(ready(w) for w in spawned))
    assert [w.kind for w in spawned] == ["chat", "embedding", "image"]
    assert hives.stopped == []
    # A 6 GB pipeline: 2 GB more than the image worker's 4 would over-commit 9 GB. The
    # least recently used go first, whatever their kind (chat, then embedding).
    sdxl = await dispatcher.spawn(SDXL, where, Silent())
    spawned.append(sdxl)
    assert sdxl.kind == "image" and hives.stopped[:1] == [spawned[0].id]
    assert _resident(spawned, hives.stopped) <= BUDGET
    clock.advance(60)
    report(registry, "rig", *(ready(w) for w in spawned if w.id not in hives.stopped))
    # And an image worker is evicted for a chat model the same way.
    chat = await dispatcher.spawn(CHAT, where, Silent())
    spawned.append(chat)
    assert chat.kind == "chat"
    assert _resident(spawned, hives.stopped) <= BUDGET
    assert {w.kind for w in spawned if w.id in hives.stopped} >= {"chat", "image"}


def _pipeline(folder: Path, weights: int) -> Path:
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps(
        {"_class_name": "StableDiffusionPipeline"}))
    with (folder / "unet" / "diffusion_pytorch_model.safetensors").open("wb") as f:
        f.truncate(weights)  # sparse: only its size matters
    (folder / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"\0" * 1000)  # not counted
    return folder


def test_a_pipelines_estimate_is_its_safetensors_twice_plus_the_runtime(
        tmp_path: Path) -> None:
    folder = _pipeline(tmp_path / "sd", 100 * MiB)
    estimate = estimate_ref(parse_ref(f"file:{folder}"))
    assert (estimate.weights_bytes, estimate.source) == (100 * MiB, "file-size")
    assert estimate.total_bytes == HEADROOM.apply(200 * MiB + DIFFUSERS_RUNTIME_BYTES)
    # not on this machine (yet): the default, as for any model not found
    assert estimate_ref(parse_ref(f"file:{tmp_path}/missing/")) == DEFAULT
    assert estimate_ref(parse_ref("hf:org/pipeline")).source == "default"


def test_the_fake_estimate_the_kind_and_scripts() -> None:
    assert estimate_ref(IMAGE).total_bytes == 64 * MiB
    assert _model_table(PlaceRequest(model=IMAGE.name, need=GB), None)["kind"] == "image"
    assert _model_table(PlaceRequest(model=SDXL.name, need=GB), None)["kind"] == "image"
    with pytest.raises(WrongModelKind, match="is an image model"):
        require_kind(IMAGE, "chat")
    with pytest.raises(WrongModelKind, match="is a chat model"):
        require_kind(CHAT, "image")
