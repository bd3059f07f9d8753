"""Stopping the local hive never blocks the queen's loop, even on a process that survives
SIGKILL (stuck in the kernel: a wedged driver, a dead NFS mount)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path
from typing import cast

from rbee.queen.local_hive import LocalHive


class Unkillable:
    """A process that ignores every signal and never exits (poll stays None)."""

    pid = 4242

    def __init__(self) -> None:
        self.signals: list[int] = []

    def poll(self) -> int | None:
        return None

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)

    def kill(self) -> None:
        self.signals.append(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:  # what a blocking stop called
        raise AssertionError("a blocking wait on the queen's loop")


async def test_a_hive_that_survives_sigkill_does_not_hang_the_queen(tmp_path: Path) -> None:
    hive = LocalHive(queen_url="http://127.0.0.1:1", port=1, token="t", worker_token="w",
                     telemetry_interval=1.0, log_path=tmp_path / "hive.log", home=tmp_path,
                     hf_endpoint=None)
    proc = Unkillable()
    hive.process = cast("subprocess.Popen[bytes]", proc)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    beat = asyncio.create_task(ticker())
    await asyncio.wait_for(hive.stop(grace=0.2), timeout=5)
    beat.cancel()
    assert proc.signals == [signal.SIGTERM, signal.SIGKILL]
    assert ticks >= 20  # the loop kept running through both waits
