"""A hive or worker ends itself when its event loop stops running (a hang its supervisor,
which restarts only a process that exits, would never see)."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from rbee.core.loop_watchdog import EXIT_STALLED, LoopWatchdog


async def test_a_loop_stuck_past_the_limit_ends_the_process(
        caplog: pytest.LogCaptureFixture) -> None:
    exits: list[int] = []
    watchdog = LoopWatchdog(0.3, beat_every=0.05, exit_process=exits.append)
    beat = watchdog.start()
    await asyncio.sleep(0.2)
    with caplog.at_level(logging.CRITICAL, logger="rbee.core.loop_watchdog"):
        time.sleep(1.0)  # noqa: ASYNC251 - the loop blocked (the point): no beat for 1 s
        deadline = time.monotonic() + 3
        while not exits and time.monotonic() < deadline:
            time.sleep(0.02)  # noqa: ASYNC251 - still blocked
    beat.cancel()
    watchdog.stop()
    assert exits == [EXIT_STALLED]
    assert any("has not run for" in r.message for r in caplog.records)


async def test_a_busy_but_running_loop_is_left_alone() -> None:
    exits: list[int] = []
    watchdog = LoopWatchdog(0.3, beat_every=0.05, exit_process=exits.append)
    beat = watchdog.start()
    for _ in range(20):  # 1 s of work in slices shorter than the limit
        time.sleep(0.05)  # noqa: ASYNC251 - work that blocks, briefly
        await asyncio.sleep(0)
    await asyncio.sleep(0.1)
    beat.cancel()
    watchdog.stop()
    assert exits == []


def test_a_log_that_blocks_does_not_keep_the_hive_alive(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """The critical line goes to a stderr nobody reads (a full pipe): exit anyway."""
    import threading

    from rbee.core import loop_watchdog

    blocked = threading.Event()
    monkeypatch.setattr(loop_watchdog, "_say", lambda _s: blocked.wait(30))
    exits: list[int] = []
    clock = iter([0.0, *[100.0] * 10]).__next__  # the beat never came after 0 s
    watchdog = LoopWatchdog(1.0, beat_every=0.01, clock=clock, exit_process=exits.append)
    started = time.monotonic()
    watchdog._watch()  # runs until it has exited
    assert exits == [EXIT_STALLED] and time.monotonic() - started < 5
    blocked.set()


async def test_the_watch_ends_with_the_lifespan_it_covers() -> None:
    """A daemon's slow shutdown (a blocking close after its lifespan) is no hang."""
    import threading

    from rbee.core.loop_watchdog import watching

    exits: list[int] = []
    before = threading.active_count()
    async with watching(0.2, beat_every=0.05, exit_process=exits.append):
        assert threading.active_count() == before + 1  # the watching thread
        await asyncio.sleep(0.1)
    time.sleep(0.6)  # noqa: ASYNC251 - blocked after the lifespan: must not count
    assert exits == []
    async with watching(0):  # off: no thread at all
        assert threading.active_count() == before
