"""Scheduling scripts run off the event loop: one thread per script, a wall-clock limit per call.

A script's decision is CPU work in Lua, and lupa releases the GIL while Lua runs, so on the
script's own thread it cannot stall the queen's event loop: other requests, `/v1/models` and
telemetry go on while it decides. One thread per script because a Lua runtime runs one call at
a time; concurrent decisions queue for it.

The caller waits at most `wall_seconds` for its answer, queueing included. A thread cannot be
stopped from outside, so a call that overruns is stopped by the script's own limits inside Lua
(instructions, CPU time, memory; see `rbee.scheduler.lua`); meanwhile the calls queued behind
it time out without running and are dropped from the queue. Only a call that ran past the
limit counts against the script (`ScriptTimedOut`); one that never got to run is `ScriptBusy`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

from rbee.core.errors import RbeeError

if TYPE_CHECKING:
    from rbee.queen.policy import Script

T = TypeVar("T")
WALL_SECONDS = 0.5  # the documented per-decision limit (the same figure as the CPU backstop)


class ScriptTimedOut(RbeeError):
    """The script's call ran past the wall-clock limit (counted as the script's failure)."""

    code = "script_failed"


class ScriptBusy(RbeeError):
    """The script's thread was still busy with earlier calls for the whole limit: this call
    never ran. Not the script's failure as such (the one that overran is counted)."""

    code = "script_busy"


@dataclass
class Answer(Generic[T]):
    """What a call returned or raised, and what the script logged during it: read on the
    script's thread, because the next call replaces the script's `last_log`."""

    value: T | None = None
    error: BaseException | None = None
    log: list[str] = field(default_factory=list)


@dataclass
class _Started:
    at: float | None = None  # perf_counter when the call began on the script's thread


class ScriptRunner:
    def __init__(self, script: Script, wall_seconds: float = WALL_SECONDS) -> None:
        self.script = script
        self.wall_seconds = wall_seconds
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"script-{script.name}")

    async def ask(self, call: Callable[[Script], T]) -> Answer[T]:
        """Run `call(script)` on the script's thread; the answer, or ScriptTimedOut/ScriptBusy.
        Errors the call raised come back in `Answer.error` with its log lines."""
        started = _Started()
        future: Future[Answer[T]] = self._pool.submit(self._run, call, started)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.wall_seconds)
        except TimeoutError:
            future.cancel()  # still queued: it never runs (a running one cannot be cancelled)
            limit = f"{self.wall_seconds:g} s"
            if started.at is None:
                raise ScriptBusy(f"script '{self.script.name}' was busy with earlier decisions "
                                 f"for the whole time limit ({limit})") from None
            raise ScriptTimedOut(f"script '{self.script.name}': wall-clock limit ({limit}) "
                                 "exceeded") from None

    def _run(self, call: Callable[[Script], T], started: _Started) -> Answer[T]:
        started.at = time.perf_counter()
        try:
            value = call(self.script)
        except Exception as exc:  # returned, not raised: the log lines go with it
            return Answer(error=exc, log=list(self.script.last_log))
        return Answer(value=value, log=list(self.script.last_log))

    def close(self) -> None:
        """The script is replaced: queued calls are dropped, a running one finishes alone."""
        self._pool.shutdown(wait=False, cancel_futures=True)
