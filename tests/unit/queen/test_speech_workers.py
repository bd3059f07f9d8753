"""Speech workers are workers like any other: evicted for (and evicting) the other kinds,
placed on a CPU (Piper runs on onnxruntime's CPU provider), with a measured estimate."""

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

CHAT, EMBED, SPEECH = (parse_ref("rbee-fake"), parse_ref("rbee-fake-embedding"),
                       parse_ref("rbee-fake-speech"))


def _dispatcher(budget: int | None, sizes: dict[str, int]):  # type: ignore[no-untyped-def]
    clock, registry, _, _ = rig({}, budget=budget)
    hives = KindHives(registry)
    dispatcher = Dispatcher(registry, cast(HiveClient, hives), spawn_timeout=5,
                            default_threads=None, estimator=lambda ref: sizes[ref.name])
    return clock, registry, hives, dispatcher


async def test_eviction_goes_across_all_three_kinds() -> None:
    sizes = {CHAT.name: 3 * GB, EMBED.name: 2 * GB, SPEECH.name: 2 * GB}
    clock, registry, hives, dispatcher = _dispatcher(4 * GB, sizes)
    where = Hints(hive_id="rig", device="cpu")
    chat = await dispatcher.spawn(CHAT, where, Silent())
    clock.advance(60)
    report(registry, "rig", ready(chat))
    speech = await dispatcher.spawn(SPEECH, where, Silent())
    assert speech.kind == "speech" and hives.stopped == [chat.id]
    clock.advance(60)
    report(registry, "rig", ready(speech))
    embed = await dispatcher.spawn(EMBED, where, Silent())  # 2 + 2 GB fit: both stay
    assert hives.stopped == [chat.id]
    clock.advance(60)
    report(registry, "rig", ready(embed))
    again = await dispatcher.spawn(CHAT, where, Silent())
    assert again.kind == "chat" and set(hives.stopped[1:]) <= {speech.id, embed.id}
    assert len(hives.stopped) >= 2


async def test_piper_is_placed_on_a_cpu_whatever_the_gpus() -> None:
    piper = parse_ref("tts-1")
    assert (piper.name, piper.engine, piper.kind) == ("piper-joe", "piper", "speech")
    _, _, _, dispatcher = _dispatcher(None, {piper.name: 380 * 2**20})
    for hints in (Hints(), Hints(mode="auto"), Hints(hive_id="rig", mode="prefer")):
        info = await dispatcher.spawn(piper, hints, Silent())
        assert (info.hive_id, info.device) == ("rig", "cpu"), hints
    with pytest.raises(InvalidRequest, match="CPU only"):
        await dispatcher.spawn(piper, Hints(device="cuda:0"), Silent())


def test_the_estimate_and_the_kind() -> None:
    piper = estimate_ref(parse_ref("piper-joe"))
    if piper.source != "default":  # installed: 60 MiB file + onnxruntime's measured share
        assert 300 * 2**20 < piper.total_bytes < 600 * 2**20
    assert estimate_ref(SPEECH).total_bytes == 64 * 2**20
    assert _model_table(PlaceRequest(model=SPEECH.name, need=GB), None)["kind"] == "speech"
    with pytest.raises(WrongModelKind, match="is a speech model"):
        require_kind(SPEECH, "chat")
