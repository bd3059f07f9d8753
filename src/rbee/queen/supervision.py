"""The queen keeps the hive it started alive: it reaps it when it dies and restarts it.

Restarts back off exponentially (0.5 s, 1 s, 2 s … capped at 30 s) so a hive that cannot start
(its port taken, a broken install) does not spin; a hive that stayed up a while (`stable_after`)
counts as healthy again, so its next death restarts it quickly. Each death is logged as a warning
naming the exit code or signal. The hive's death marks it down in the registry at once, so
routing and `/health` need not wait for three missed telemetry intervals.

A hive can also hang without dying (a wedged GPU driver, a deadlock): its process runs, but
nothing answers. Its telemetry is the heartbeat: running but silent for `hang_after`
seconds (counted from its start, so a restarted hive gets that long to report first), it is
killed with SIGKILL (a hung hive cannot run a graceful stop; its workers follow it through
PDEATHSIG) and restarted like any other death.
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
SilentFor = Callable[[], float | None]  # seconds since the hive's last report (None: never)
# Silence that means hung, not slow: many report intervals, and never under 30 s (a report
# may wait 5 s on a busy queen; a restart costs the hive's workers and their loaded models).
HANG_INTERVALS = 15
HANG_FLOOR = 30.0


def hang_after(telemetry_interval: float) -> float:
    return max(HANG_FLOOR, HANG_INTERVALS * telemetry_interval)
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

    def kill(self) -> None:
        """SIGKILL it now (`poll` then reaps it)."""
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
                 poll_interval: float = 0.1, silent_for: SilentFor | None = None,
                 hang_after: float = HANG_FLOOR) -> None:
        self._hive = hive
        self._silent_for = silent_for  # None: exits only (no telemetry to judge by)
        self._hang_after = hang_after
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
            code, hung_for = await self._wait_exit(started_at)
            uptime = self._clock.monotonic() - started_at
            failures = 1 if uptime >= self._backoff.stable_after else failures + 1
            delay = self._backoff.delay(failures)
            self.state, self.last_exit = "restarting", describe_exit(code)
            if hung_for is not None:
                self.last_exit = f"hung (no telemetry for {hung_for:.0f}s), {self.last_exit}"
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

    async def _wait_exit(self, started_at: float) -> tuple[int, float | None]:
        """The exit code, and how long the hive had been silent if we killed it as hung."""
        hung_for = None
        while (code := self._hive.poll()) is None:
            if hung_for is None and (hung_for := self._silence(started_at)) is not None:
                logger.warning("local hive (pid %s) runs but has sent no telemetry for %.0fs "
                               "(hung?); killing it (SIGKILL)", self._hive.pid, hung_for)
                self._hive.kill()
            await self._sleep(self._poll)
        return code, hung_for

    def _silence(self, started_at: float) -> float | None:
        """Seconds this run of the hive has been silent, once past `hang_after`."""
        if self._silent_for is None:
            return None
        up = self._clock.monotonic() - started_at
        if up < self._hang_after:
            return None
        ago = self._silent_for()
        # A report older than this run (or none at all): silent since it started.
        silent = up if ago is None else min(ago, up)
        return silent if silent >= self._hang_after else None

    async def stop(self) -> None:
        """No more restarts; then stop the hive (it stops its workers first)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.state = "stopped"
        await self._hive.stop()
