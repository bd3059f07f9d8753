"""What /metrics reads at scrape time (hives, workers, devices, queues, evictions, the
script's counters) and what the dispatcher reports (decision time, load seconds)."""

from __future__ import annotations

import asyncio
from typing import cast

from prometheus_client import generate_latest

from rbee.api.cluster import Device, HiveTelemetry, WorkerInfo
from rbee.core.clock import FakeClock
from rbee.core.states import WorkerState
from rbee.models.catalog import ModelRef
from rbee.queen.admission import Admission
from rbee.queen.dispatch import Dispatcher, Hints, Silent
from rbee.queen.hive_client import HiveClient
from rbee.queen.metrics import QueenMetrics
from rbee.queen.metrics_collector import ClusterCollector, ClusterSources
from rbee.queen.registry import Registry
from tests.unit.queen.metrics_scrape import label_values, value
from tests.unit.queen.test_scheduling import GB, INTERVAL, FakeHives, report, rig

H100 = Device(id="cuda:0", kind="cuda", name="H100", memory_total=80 * GB,
              memory_free=60 * GB, utilization=87.0, temperature=61.0, power_watts=312.5)
A10 = Device(id="cuda:1", kind="cuda", name="A10", memory_total=24 * GB,
             memory_free=24 * GB, utilization=0.0, temperature=40.0)  # no power sensing
CPU = Device(id="cpu", kind="cpu", name="cpu", memory_total=64 * GB, memory_free=32 * GB)


def worker(wid: str, hive: str, state: WorkerState, kind: str = "chat") -> WorkerInfo:
    return WorkerInfo(id=wid, hive_id=hive, model="smollm2", model_path="", device="cpu",
                      engine="fake", kind=kind, url=f"http://{wid}",  # type: ignore[arg-type]
                      state=state)


def scrape(metrics: QueenMetrics) -> str:
    return generate_latest(metrics.registry).decode()


async def test_cluster_state_is_read_when_scraped() -> None:
    clock = FakeClock()
    registry = Registry(clock, INTERVAL)
    registry.report(HiveTelemetry(hive_id="gpu-box", url="http://g", version="0", pid=1,
                                  devices=[H100, A10, CPU], region="eu", workers=[
                                      worker("w1", "gpu-box", WorkerState.READY),
                                      worker("w2", "gpu-box", WorkerState.LOADING),
                                      worker("w3", "gpu-box", WorkerState.READY,
                                             "embedding")]))
    registry.report(HiveTelemetry(hive_id="old-box", url="http://o", version="0", pid=1,
                                  devices=[CPU], workers=[worker("w4", "old-box",
                                                                 WorkerState.READY)]))
    registry.reservations.reserve("w9", "gpu-box", "cuda:0", "smollm2", 5 * GB)
    admission = Admission(clock, max_queue=8, capacity=lambda model: 1)
    dispatcher = Dispatcher(registry, cast(HiveClient, FakeHives(registry)), spawn_timeout=5,
                            default_threads=None)
    unloads = [1, 2, 3]
    metrics = QueenMetrics()
    metrics.watch(ClusterCollector(ClusterSources(
        registry, admission, dispatcher.policy, dispatcher, idle_unloads=lambda: len(unloads),
        model_label=metrics.models)))
    clock.advance(3 * INTERVAL + 0.1)  # old-box falls silent ...
    registry.report(registry.telemetry("gpu-box"))  # type: ignore[arg-type]  # ... not gpu-box
    first = await admission.enter("smollm2")
    waiting = asyncio.create_task(admission.enter("smollm2"))
    await asyncio.sleep(0)
    text = scrape(metrics)
    first.release()
    (await waiting).release()

    assert value(text, "rbee_hive_up", hive="gpu-box", region="eu") == 1
    assert value(text, "rbee_hive_up", hive="old-box") == 0
    assert value(text, "rbee_workers", state="ready", kind="chat") == 1
    assert value(text, "rbee_workers", state="loading", kind="chat") == 1
    assert value(text, "rbee_workers", state="ready", kind="embedding") == 1
    assert value(text, "rbee_workers", state="unknown", kind="chat") == 1  # its hive is down
    gpu = {"hive": "gpu-box", "device": "cuda:0", "kind": "cuda"}
    assert value(text, "rbee_device_memory_total_bytes", **gpu) == 80 * GB
    assert value(text, "rbee_device_memory_used_bytes", **gpu) == 20 * GB
    assert value(text, "rbee_device_memory_reserved_bytes", **gpu) == 5 * GB
    assert value(text, "rbee_gpu_utilization_ratio", **gpu) == 0.87
    assert value(text, "rbee_gpu_temperature_celsius", **gpu) == 61
    assert value(text, "rbee_gpu_power_watts", **gpu) == 312.5
    # Readings NVML did not give are absent, not zero; a CPU has none.
    assert label_values(text, "rbee_gpu_power_watts", "device") == {"cuda:0"}
    assert label_values(text, "rbee_gpu_temperature_celsius", "device") == {"cuda:0",
                                                                             "cuda:1"}
    assert value(text, "rbee_queue_depth", model="smollm2") == 1
    assert value(text, "rbee_requests_running", model="smollm2") == 1
    assert value(text, "rbee_evictions_total", reason="idle") == 3
    assert value(text, "rbee_scheduler_script_applied") == 0


class AskedHives(FakeHives):
    async def get_worker(self, hive_id: str, url: str, worker_id: str) -> WorkerInfo:
        found = self.registry.find_worker(worker_id)
        assert found is not None
        return found


async def test_placement_time_load_seconds_and_evictions_are_reported() -> None:
    clock, registry, _, _ = rig({"a": 3 * GB, "b": 3 * GB}, budget=4 * GB)
    metrics = QueenMetrics()
    dispatcher = Dispatcher(registry, cast(HiveClient, AskedHives(registry)), spawn_timeout=5,
                            default_threads=None, estimator=lambda ref: 3 * GB,
                            observer=metrics)
    metrics.watch(ClusterCollector(ClusterSources(
        registry, Admission(clock, max_queue=1, capacity=lambda m: 1), dispatcher.policy,
        dispatcher, idle_unloads=lambda: 0, model_label=metrics.models)))
    hints = Hints(hive_id="rig", device="cpu")
    first = await dispatcher.spawn(ModelRef("builtin", "a", "fake"), hints, Silent())

    async def becomes_ready() -> None:
        await asyncio.sleep(0.05)
        report(registry, "rig", first.model_copy(update={"state": WorkerState.READY,
                                                         "memory_bytes": 3 * GB}))

    ready_soon = asyncio.create_task(becomes_ready())
    await dispatcher.wait_ready(first, Silent())
    await ready_soon
    await dispatcher.wait_ready(first, Silent())  # a second waiter: one load, counted once
    await dispatcher.spawn(ModelRef("builtin", "b", "fake"), hints, Silent())  # evicts a
    text = scrape(metrics)
    assert value(text, "rbee_model_load_seconds_count", model="a") == 1
    assert 0.04 <= value(text, "rbee_model_load_seconds_sum", model="a") < 5
    assert value(text, "rbee_scheduler_decision_seconds_count", decision="place") == 2
    assert value(text, "rbee_evictions_total", reason="room") == 1
