"""`run_detached`: blocking work on a daemon thread, its outcome back on the loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from rbee.core.detached import run_detached


async def test_the_result_and_the_error_come_back_on_the_loop() -> None:
    assert await run_detached(lambda: 6 * 7, name="answer") == 42

    def fail() -> int:
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        await run_detached(fail, name="fail")


async def test_the_thread_is_a_daemon_and_a_cancelled_wait_drops_its_outcome() -> None:
    release, seen = threading.Event(), []

    def block() -> str:
        seen.append(threading.current_thread())
        release.wait(5)
        return "late"

    future = run_detached(block, name="stuck-probe")
    await asyncio.sleep(0.01)
    assert seen[0].daemon and seen[0].name == "stuck-probe"  # never joined at exit
    future.cancel()
    release.set()
    seen[0].join(5)
    await asyncio.sleep(0.01)  # the late outcome arrives, and is dropped without error
    assert future.cancelled()
