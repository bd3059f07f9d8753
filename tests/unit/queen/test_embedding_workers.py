"""Embedding workers are workers like any other: placed with a memory estimate, evicted for
(and evicting) chat workers, and seen with their kind by scheduling scripts."""

from __future__ import annotations

from typing import cast

import pytest

from rbee.api.cluster import SpawnWorker, WorkerInfo
from rbee.core.clock import FakeClock
from rbee.core.errors import InvalidRequest
from rbee.models.catalog import parse_ref
from rbee.models.estimate import estimate_ref
from rbee.queen.dispatch import Dispatcher, Hints, Silent
from rbee.queen.hive_client import HiveClient
from rbee.queen.policy import _model_table
from rbee.queen.registry import Registry
from rbee.scheduler.lua import WORKER_STATIC, LuaPolicy
from rbee.scheduler.placement import PlaceRequest
from tests.support.script_inputs import device, model, worker
from tests.unit.queen.test_scheduling import GB, FakeHives, ready, report, rig

CHAT, EMBED = parse_ref("rbee-fake"), parse_ref("rbee-fake-embedding")


class KindHives(FakeHives):
    """What a real hive does: the worker's kind is its model's."""

    async def spawn(self, hive_id: str, url: str, spec: SpawnWorker) -> WorkerInfo:
        info = await super().spawn(hive_id, url, spec)
        return info.model_copy(update={"kind": parse_ref(spec.model).kind})


def _rig(budget: int | None) -> tuple[FakeClock, Registry, KindHives, Dispatcher]:
    clock, registry, _, _ = rig({}, budget=budget)
    hives = KindHives(registry)
    sizes = {CHAT.name: 3 * GB, EMBED.name: 2 * GB}
    dispatcher = Dispatcher(registry, cast(HiveClient, hives), spawn_timeout=5,
                            default_threads=None, estimator=lambda ref: sizes[ref.name])
    return clock, registry, hives, dispatcher


async def test_eviction_goes_across_kinds_both_ways() -> None:
    clock, registry, hives, dispatcher = _rig(budget=4 * GB)
    where = Hints(hive_id="rig", device="cpu")
    chat = await dispatcher.spawn(CHAT, where, Silent())
    clock.advance(60)
    report(registry, "rig", ready(chat))
    embed = await dispatcher.spawn(EMBED, where, Silent())
    assert embed.kind == "embedding" and hives.stopped == [chat.id]
    clock.advance(60)
    report(registry, "rig", ready(embed))
    again = await dispatcher.spawn(CHAT, where, Silent())
    assert again.kind == "chat" and hives.stopped == [chat.id, embed.id]


async def test_both_kinds_share_a_device_within_its_budget() -> None:
    _, registry, hives, dispatcher = _rig(budget=6 * GB)
    where = Hints(hive_id="rig", device="cpu")
    chat = await dispatcher.spawn(CHAT, where, Silent())
    embed = await dispatcher.spawn(EMBED, where, Silent())
    assert hives.stopped == [] and {chat.kind, embed.kind} == {"chat", "embedding"}
    assert sum(registry.reservations.totals()[0].values()) == 5 * GB


def test_the_built_in_embedding_model_has_a_measured_estimate() -> None:
    minilm = estimate_ref(parse_ref("minilm"))
    fake = estimate_ref(EMBED)
    assert fake.total_bytes == 64 * 2**20  # the bare worker process
    if minilm.source != "default":  # installed: the file plus onnxruntime's measured share
        assert 300 * 2**20 < minilm.total_bytes < 600 * 2**20


def test_scripts_see_the_workers_kind_and_the_models() -> None:
    assert "kind" in WORKER_STATIC
    script = LuaPolicy("""
        function route(job, workers) return workers:kind("embedding"):least_loaded() end
        function place(model, devices)
          if model.kind == "embedding" then return devices[2] end
          return devices[1]
        end""")
    workers = [worker("w1", kind="chat"), worker("w2", kind="embedding", load=3),
               worker("w3", kind="embedding", load=1)]
    assert script.route({"model": "m"}, workers) == "w3"
    table = _model_table(PlaceRequest(model=EMBED.name, need=GB), None)
    assert table["kind"] == "embedding"
    assert _model_table(PlaceRequest(model=CHAT.name, need=GB), None)["kind"] == "chat"
    devices = [device("h1/cuda:0"), device("h1/cpu", kind="cpu")]
    assert script.place(model(kind="embedding"), devices) == "h1/cpu"
    assert script.place(model(kind="chat"), devices) == "h1/cuda:0"


async def test_a_cpu_only_engine_is_placed_on_a_cpu_whatever_the_gpus() -> None:
    minilm = parse_ref("minilm")
    _, registry, hives, _ = _rig(budget=None)
    dispatcher = Dispatcher(registry, cast(HiveClient, hives), spawn_timeout=5,
                            default_threads=None, estimator=lambda ref: 440 * 2**20)
    for hints in (Hints(), Hints(mode="auto"), Hints(hive_id="rig", mode="prefer")):
        info = await dispatcher.spawn(minilm, hints, Silent())
        assert (info.hive_id, info.device) == ("rig", "cpu"), hints
    with pytest.raises(InvalidRequest, match="CPU only") as info_:
        await dispatcher.spawn(minilm, Hints(device="cuda:0"), Silent())
    assert info_.value.param == "device"
