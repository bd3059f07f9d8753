"""Transcription workers are workers like any other: evicted for (and evicting) the other
kinds under one memory budget, placed on a GPU when there is one (faster-whisper runs on
CUDA; unlike Piper it is not CPU-only), with a measured estimate; scripts see the kind."""

from __future__ import annotations

from typing import cast

import pytest

from rbee.core.errors import InvalidRequest, WrongModelKind
from rbee.models.catalog import parse_ref, require_kind
from rbee.models.estimate import estimate_ref
from rbee.queen.dispatch import Dispatcher, Hints, Silent
from rbee.queen.hive_client import HiveClient
from rbee.queen.policy import _model_table
from rbee.scheduler.placement import PlaceRequest
from tests.unit.queen.test_embedding_workers import KindHives
from tests.unit.queen.test_scheduling import GB, ready, report, rig

CHAT, SPEECH, STT = (parse_ref("rbee-fake"), parse_ref("rbee-fake-speech"),
                     parse_ref("rbee-fake-transcription"))


def _dispatcher(budget: int | None, sizes: dict[str, int]):  # type: ignore[no-untyped-def]
    clock, registry, _, _ = rig({}, budget=budget)
    hives = KindHives(registry)
    dispatcher = Dispatcher(registry, cast(HiveClient, hives), spawn_timeout=5,
                            default_threads=None, estimator=lambda ref: sizes[ref.name])
    return clock, registry, hives, dispatcher


async def test_eviction_goes_across_kinds() -> None:
    sizes = {CHAT.name: 3 * GB, SPEECH.name: 2 * GB, STT.name: 2 * GB}
    clock, registry, hives, dispatcher = _dispatcher(4 * GB, sizes)
    where = Hints(hive_id="rig", device="cpu")
    chat = await dispatcher.spawn(CHAT, where, Silent())
    clock.advance(60)
    report(registry, "rig", ready(chat))
    stt = await dispatcher.spawn(STT, where, Silent())  # 3 + 2 > 4: the idle chat goes
    assert stt.kind == "transcription" and hives.stopped == [chat.id]
    clock.advance(60)
    report(registry, "rig", ready(stt))
    speech = await dispatcher.spawn(SPEECH, where, Silent())  # 2 + 2 GB fit: both stay
    assert hives.stopped == [chat.id]
    clock.advance(60)
    report(registry, "rig", ready(stt), ready(speech))
    again = await dispatcher.spawn(CHAT, where, Silent())  # and a chat model evicts them
    assert again.kind == "chat" and set(hives.stopped[1:]) <= {stt.id, speech.id}
    assert len(hives.stopped) >= 2


async def test_whisper_goes_to_the_gpu_and_piper_stays_on_the_cpu() -> None:
    whisper = parse_ref("whisper-1")
    assert (whisper.name, whisper.engine, whisper.kind) == (
        "whisper-tiny-en", "whisper", "transcription")
    piper = parse_ref("tts-1")
    _, _, _, dispatcher = _dispatcher(None, {whisper.name: 392 * 2**20,
                                             piper.name: 380 * 2**20})
    info = await dispatcher.spawn(whisper, Hints(), Silent())
    assert (info.hive_id, info.device) == ("rig", "cuda:0")
    on_cpu = await dispatcher.spawn(whisper, Hints(device="cpu", mode="pin"), Silent())
    assert on_cpu.device == "cpu"
    with pytest.raises(InvalidRequest, match="CPU only"):
        await dispatcher.spawn(piper, Hints(device="cuda:0"), Silent())


def test_the_estimate_the_kind_and_file_refs() -> None:
    whisper = estimate_ref(parse_ref("whisper-tiny-en"))
    if whisper.source != "default":  # installed: 75 MB model.bin + CTranslate2's share
        assert 350 * 2**20 < whisper.total_bytes < 600 * 2**20
    assert estimate_ref(STT).total_bytes == 64 * 2**20
    assert _model_table(PlaceRequest(model=STT.name, need=GB), None)["kind"] == (
        "transcription")
    with pytest.raises(WrongModelKind, match="is a transcription model"):
        require_kind(STT, "chat")
    with pytest.raises(WrongModelKind, match="is a chat model"):
        require_kind(CHAT, "transcription")
    for ref in ("file:/m/faster-whisper-small", "file:/m/any/model.bin",
                "file:/m/whisper-large-v3-ct2", "file:/m/faster-whisper-tiny.en",
                "file:/m/distil-whisper-large-v3.5"):
        parsed = parse_ref(ref)
        assert (parsed.engine, parsed.kind) == ("whisper", "transcription"), ref
    with pytest.raises(InvalidRequest):
        parse_ref("file:/m/whisper.txt")  # a file, not a CTranslate2 folder
