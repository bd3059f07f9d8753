"""The queen keeps the hive it started alive: it reaps it when it dies and restarts it.

Restarts back off exponentially (0.5 s, 1 s, 2 s … capped at 30 s) so a hive that cannot start
(its port taken, a broken install) does not spin; a hive that stayed up a while (`stable_after`)
counts as healthy again, so its next death restarts it quickly. Each death is logged as a warning
naming the exit code or signal. The hive's death marks it down in the registry at once, so
routing and `/health` need not wait for three missed telemetry intervals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from rbee.core.clock import Clock

logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
SupervisionState = Literal["running", "restarting", "stopped"]


class ChildHive(Protocol):
    """What the supervisor needs of the hive process (`LocalHive`, or a fake in tests)."""

    @property
    def started(self) -> bool: ...

    @property
    def pid(self) -> int | None: ...

    def start(self) -> None:
        """Spawn the process. Called on the event loop's thread (the main thread)."""
        ...

    def poll(self) -> int | None:
        """Exit code (reaping the process), or None while it runs."""
        ...

    async def stop(self) -> None: ...


@dataclass(frozen=True)
class Backoff:
    first: float = 0.5
    cap: float = 30.0
    factor: float = 2.0
    stable_after: float = 60.0  # up this long: the next death starts from `first` again

    def delay(self, failures: int) -> float:
        """Seconds to wait before restart number `failures` of a series (1, 2, …)."""
        return float(min(self.cap, self.first * self.factor ** max(0, failures - 1)))


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class HiveSupervisor:
    def __init__(self, hive: ChildHive, clock: Clock, *, on_exit: Callable[[], None],
                 sleep: Sleep = asyncio.sleep, backoff: Backoff | None = None,
                 poll_interval: float = 0.1) -> None:
        self._hive = hive
        self._clock = clock
        self._on_exit = on_exit
        self._sleep = sleep
        self._backoff = backoff or Backoff()
        self._poll = poll_interval
        self._task: asyncio.Task[None] | None = None
        self.state: SupervisionState = "stopped"
        self.restarts = 0
        self.last_exit: str | None = None

    def start(self) -> None:
        """Start the hive unless it already runs (the server may start it before importing
        the app) and watch it. Must run on the event loop, which runs on the main thread."""
        if not self._hive.started:
            self._hive.start()
        self.state = "running"
        self._task = asyncio.create_task(self.run(), name="local-hive-supervisor")

    async def run(self) -> None:
        """Until cancelled: wait for the hive to exit, then restart it after a backoff."""
        started_at = self._clock.monotonic()
        failures = 0
        while True:
            code = await self._wait_exit()
            uptime = self._clock.monotonic() - started_at
            failures = 1 if uptime >= self._backoff.stable_after else failures + 1
            delay = self._backoff.delay(failures)
            self.state, self.last_exit = "restarting", describe_exit(code)
            self._on_exit()
            logger.warning("local hive (pid %s) %s after %.1fs up; restarting it in %.1fs",
                           self._hive.pid, self.last_exit, uptime, delay)
            await self._sleep(delay)
            started_at = self._clock.monotonic()
            try:
                self._hive.start()
            except Exception:  # e.g. no memory to fork: the dead process stays, so the next
                # loop retries later; anything escaping here would end supervision unseen.
                logger.exception("local hive did not start; retrying")
                continue
            self.restarts += 1
            self.state = "running"
            logger.warning("local hive restarted (pid %s, restart %d)", self._hive.pid,
                           self.restarts)

    async def _wait_exit(self) -> int:
        while (code := self._hive.poll()) is None:
            await self._sleep(self._poll)
        return code

    async def stop(self) -> None:
        """No more restarts; then stop the hive (it stops its workers first)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.state = "stopped"
        await self._hive.stop()
