"""End a daemon whose event loop has stopped running: a hang nobody else can see.

A hive or worker whose loop is stuck (a blocking call that never returns, a deadlock) keeps
its process alive, and supervisors restart only a process that exits: systemd and
`supervise-hive` for a remote hive, its hive for a worker (a remote hive has no queen-side
supervisor that could kill it). So the daemon watches itself: a task on the loop beats every
second, a daemon thread checks the beat, and a loop silent for `limit` seconds ends the
process (exit status 70) for its supervisor to start afresh (a hive's workers follow it:
PDEATHSIG). The thread costs one wake-up a second; the beat one timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable

logger = logging.getLogger(__name__)
EXIT_STALLED = 70  # EX_SOFTWARE: an internal error, for the supervisor's log


class LoopWatchdog:
    def __init__(self, limit: float, *, beat_every: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 exit_process: Callable[[int], object] = os._exit) -> None:
        self._limit = limit
        self._every = beat_every
        self._clock = clock
        self._exit = exit_process  # os._exit: the loop cannot run a clean shutdown anyway
        self._last = clock()
        self._stop = threading.Event()

    async def beat(self) -> None:
        """The loop's side: runs until cancelled (the daemon's lifespan ends it)."""
        while True:
            self._last = self._clock()
            await asyncio.sleep(self._every)

    def start(self) -> asyncio.Task[None]:
        """Begin watching; returns the beat task (cancel it, then `stop`, on shutdown)."""
        self._last = self._clock()
        threading.Thread(target=self._watch, name="loop-watchdog", daemon=True).start()
        return asyncio.create_task(self.beat(), name="loop-watchdog-beat")

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(self._every):
            silent = self._clock() - self._last
            if silent > self._limit:
                # Said on a thread of its own, given 2 s: a log that blocks (a full pipe
                # nobody reads: maybe the very thing the loop hangs on) must not keep us.
                saying = threading.Thread(target=_say, args=(silent,), daemon=True)
                saying.start()
                saying.join(2.0)
                self._exit(EXIT_STALLED)
                return


def _say(silent: float) -> None:
    logger.critical("the event loop has not run for %.0fs (hung); exiting so that this "
                    "process's supervisor starts it again", silent)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()


@contextlib.asynccontextmanager
async def watching(limit: float, *, beat_every: float = 1.0,
                   exit_process: Callable[[int], object] = os._exit) -> AsyncIterator[None]:
    """The loop watched while the block runs (a daemon's lifespan); `limit` 0: not at all.
    Leaving the block stops the watch first: a slow shutdown is no hang."""
    if not limit:
        yield
        return
    watchdog = LoopWatchdog(limit, beat_every=beat_every, exit_process=exit_process)
    beat = watchdog.start()
    try:
        yield
    finally:
        beat.cancel()
        watchdog.stop()
