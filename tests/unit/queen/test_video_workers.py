"""Video workers are workers like any other: evicted for (and evicting) the other kinds under
a memory budget, placed on a GPU when there is one (diffusers runs on torch's devices), with
an estimate from the pipeline folder's weights; diffusers folders and repos parse as video."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

from rbee.core.errors import WrongModelKind
from rbee.models.catalog import parse_ref, require_kind
from rbee.models.estimate import DIFFUSERS_RUNTIME_BYTES, estimate_ref
from rbee.queen.dispatch import Dispatcher, Hints, Silent
from rbee.queen.hive_client import HiveClient
from rbee.queen.policy import _model_table
from rbee.scheduler.placement import PlaceRequest
from tests.unit.queen.test_embedding_workers import KindHives
from tests.unit.queen.test_scheduling import GB, ready, report, rig

CHAT, EMBED, VIDEO = (parse_ref("rbee-fake"), parse_ref("rbee-fake-embedding"),
                      parse_ref("rbee-fake-video"))


async def test_eviction_goes_across_chat_embedding_and_video() -> None:
    sizes = {CHAT.name: 3 * GB, EMBED.name: 2 * GB, VIDEO.name: 2 * GB}
    clock, registry, _, _ = rig({}, budget=4 * GB)
    hives = KindHives(registry)
    dispatcher = Dispatcher(registry, cast(HiveClient, hives), spawn_timeout=5,
                            default_threads=None, estimator=lambda ref: sizes[ref.name])
    where = Hints(hive_id="rig", device="cpu")
    chat = await dispatcher.spawn(CHAT, where, Silent())
    clock.advance(60)
    report(registry, "rig", ready(chat))
    video = await dispatcher.spawn(VIDEO, where, Silent())  # 3 + 2 > 4: the chat goes
    assert video.kind == "video" and hives.stopped == [chat.id]
    clock.advance(60)
    report(registry, "rig", ready(video))
    embed = await dispatcher.spawn(EMBED, where, Silent())  # 2 + 2 fit: both stay
    assert hives.stopped == [chat.id]
    clock.advance(60)
    report(registry, "rig", ready(embed))
    again = await dispatcher.spawn(CHAT, where, Silent())
    assert again.kind == "chat" and set(hives.stopped[1:]) <= {video.id, embed.id}


def test_diffusers_references_asked_for_a_video_are_video_models(tmp_path: Path) -> None:
    # A pipeline is an image model by its form (the queen reads no disk); a video request
    # takes it as a video pipeline (the hive then checks its class).
    assert parse_ref(f"file:{tmp_path}").kind == "image"
    folder = require_kind(parse_ref(f"file:{tmp_path}"), "video")
    assert (folder.engine, folder.kind, folder.path) == ("diffusers_video", "video",
                                                        str(tmp_path))
    repo = require_kind(parse_ref("hf:org/tiny-animatediff"), "video")
    assert (repo.engine, repo.kind, repo.repo, repo.filename) == (
        "diffusers_video", "video", "org/tiny-animatediff", None)
    assert parse_ref("file:/m/model.gguf").kind == "chat"  # files stay GGUF


def test_the_estimate_counts_every_component_s_weights(tmp_path: Path) -> None:
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"0" * 1000)
    (tmp_path / "vae.safetensors").write_bytes(b"0" * 500)
    (tmp_path / "model_index.json").write_text("{}")
    estimate = estimate_ref(require_kind(parse_ref(f"file:{tmp_path}"), "video"))
    assert estimate.weights_bytes == 1500
    assert estimate.compute_bytes == 1500 + DIFFUSERS_RUNTIME_BYTES  # weights x 2, + runtime
    assert estimate_ref(VIDEO).total_bytes == 64 * 2**20  # the fake's fixed share


def test_the_kind_reaches_scripts_and_refusals() -> None:
    assert _model_table(PlaceRequest(model=VIDEO.name, need=GB), None)["kind"] == "video"
    with pytest.raises(WrongModelKind, match="is a video model"):
        require_kind(VIDEO, "chat")
    with pytest.raises(WrongModelKind, match="this request needs a video model"):
        require_kind(CHAT, "video")
