"""GuardedProbe: the devices off the event loop, with a deadline and a last good answer."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from rbee.api.cluster import Device
from rbee.hive.probe_guard import GuardedProbe


def device(free: int) -> Device:
    return Device(id="cuda:0", kind="cuda", name="gpu", memory_total=100, memory_free=free)


class ScriptedProbe:
    """Answers with each `answers` item in turn: a Device list, an exception to raise, or
    "hang" (block until released)."""

    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.release = threading.Event()

    def devices(self) -> list[Device]:
        answer = self.answers[self.calls]
        self.calls += 1
        if answer == "hang":
            self.release.wait(10)
            return [device(1)]
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, list)
        return answer


async def test_a_stuck_probe_gives_the_last_answer_until_it_recovers(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="rbee.hive.probe_guard")
    probe = ScriptedProbe([device(50)], "hang", [device(7)])
    guard = GuardedProbe(probe, deadline=0.05)
    assert await guard.devices() == [device(50)]
    assert await guard.devices() == [device(50)]  # past the deadline: the last good list
    assert guard.stuck
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await guard.devices() == [device(50)]  # at once, and no second probe started
    assert loop.time() - started < 0.05 and probe.calls == 2
    probe.release.set()  # the driver answers again: that late answer counts
    for _ in range(100):
        if not guard.stuck:
            break
        await asyncio.sleep(0.01)
    assert await guard.devices() == [device(7)] and probe.calls == 3
    said = [r.message for r in caplog.records]
    assert len([m for m in said if "gave no answer within" in m]) == 1
    assert "device probe answers again" in said


async def test_a_failing_probe_keeps_the_last_good_devices(
        caplog: pytest.LogCaptureFixture) -> None:
    probe = ScriptedProbe([device(50)], RuntimeError("NVML_ERROR_UNKNOWN"))
    guard = GuardedProbe(probe, deadline=1.0)
    assert await guard.devices() == [device(50)]
    assert await guard.devices() == [device(50)]
    await asyncio.sleep(0)  # the failure's callback logs it
    assert "device probe failed: RuntimeError: NVML_ERROR_UNKNOWN" in caplog.text


def test_a_driver_wedged_before_start_up_leaves_the_cpu_not_a_hive_that_never_starts(
        caplog: pytest.LogCaptureFixture) -> None:
    import threading
    import time

    from rbee.hive.probe_guard import first_devices

    release = threading.Event()

    class Wedged:
        def devices(self) -> list[Device]:
            release.wait(10)
            return []

    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="rbee.hive.probe_guard"):
        found = first_devices(Wedged(), deadline=0.2)
    release.set()
    assert time.monotonic() - started < 2
    assert [d.kind for d in found] == ["cpu"]
    assert any("gave no answer" in r.message and "CPU only" in r.message
               for r in caplog.records)


def test_a_probe_that_fails_at_start_up_leaves_the_cpu(caplog: pytest.LogCaptureFixture
                                                       ) -> None:
    from rbee.hive.probe_guard import first_devices

    class Broken:
        def devices(self) -> list[Device]:
            raise RuntimeError("NVML: driver/library version mismatch")

    with caplog.at_level(logging.ERROR, logger="rbee.hive.probe_guard"):
        assert [d.kind for d in first_devices(Broken(), deadline=5)] == ["cpu"]
    assert any("version mismatch" in r.message for r in caplog.records)
