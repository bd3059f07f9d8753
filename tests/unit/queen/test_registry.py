from __future__ import annotations

import pytest

from rbee.api.cluster import Device, HiveTelemetry, WorkerInfo
from rbee.core.clock import FakeClock
from rbee.core.errors import HiveNotFound
from rbee.core.states import WorkerState
from rbee.queen.registry import Registry

CPU = Device(id="cpu", kind="cpu", name="cpu", memory_total=1, memory_free=1)


def telemetry(*workers: WorkerInfo) -> HiveTelemetry:
    return HiveTelemetry(hive_id="h", url="http://h", version="0", pid=1, devices=[CPU],
                         workers=list(workers))


def w(wid: str) -> WorkerInfo:
    return WorkerInfo(id=wid, hive_id="h", model="m", model_path="", device="cpu", engine="fake",
                      url="http://w", state=WorkerState.READY)


def test_hive_goes_down_after_three_missed_intervals() -> None:
    clock = FakeClock()
    reg = Registry(clock, telemetry_interval=2.0)
    reg.report(telemetry(w("a")))
    clock.advance(6.0)
    assert reg.is_up("h")
    clock.advance(0.1)
    assert not reg.is_up("h") and not reg.snapshot().hives[0].up
    reg.report(telemetry())
    assert reg.is_up("h") and reg.workers() == []


def test_inflight_counts_feed_the_snapshot() -> None:
    reg = Registry(FakeClock(), 1.0)
    reg.report(telemetry(w("a")))
    reg.acquire("a")
    reg.acquire("a")
    reg.release("a")
    assert reg.snapshot().workers[0].inflight == 1
    reg.release("a")
    reg.release("a")
    assert reg.snapshot().workers[0].inflight == 0


def test_unknown_hive() -> None:
    with pytest.raises(HiveNotFound):
        Registry(FakeClock(), 1.0).hive_url("nope")
