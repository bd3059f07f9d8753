"""Notice hives that went silent, and re-place the models they were serving.

Routing already skips a hive that missed 3 telemetry intervals (`Registry.is_up`); this
loop adds the reaction: each model that was served there and is now served nowhere else gets
a new worker on a live hive, when one has room. A hive that comes back simply reports again:
its surviving workers are re-adopted from its telemetry (or are gone, if it restarted).
"""

from __future__ import annotations

import asyncio
import logging

from rbee.core.errors import RbeeError
from rbee.core.states import WorkerState
from rbee.models.catalog import parse_ref
from rbee.queen.dispatch import Dispatcher, Hints, Silent
from rbee.queen.registry import Registry

logger = logging.getLogger(__name__)
_SERVING = (WorkerState.STARTING, WorkerState.LOADING, WorkerState.READY)


class Watchdog:
    def __init__(self, registry: Registry, dispatcher: Dispatcher, interval: float) -> None:
        self._registry = registry
        self._dispatcher = dispatcher
        self._interval = interval
        self._down: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.replaced: list[tuple[str, str]] = []  # (dead hive, model) re-placed, for status

    def newly_down(self) -> list[str]:
        """Hives that went down since the last call (and forget those that came back)."""
        # Silent hives only: a merely suspected one (an unreachable worker) reports again
        # within an interval, and re-placing for it would start needless workers.
        down = {h for h in self._registry.hive_ids() if self._registry.silent(h)}
        fresh = sorted(down - self._down)
        for hive in sorted(self._down - down):
            logger.info("hive %s is back (or was removed)", hive)
        self._down = down
        return fresh

    def orphaned_models(self, hive_id: str) -> list[str]:
        """Models that hive served and no live hive serves now."""
        lost = {w.model for w in self._registry.workers()
                if w.hive_id == hive_id and w.state in _SERVING}
        alive = {w.model for w in self._registry.workers()
                 if w.state in _SERVING and self._registry.is_up(w.hive_id)}
        return sorted(lost - alive)

    def tick(self) -> None:
        for hive in self.newly_down():
            logger.warning("hive %s missed 3 telemetry intervals: marked down, not routed to",
                           hive)
            for model in self.orphaned_models(hive):
                task = asyncio.create_task(self._replace(hive, model), name=f"replace:{model}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _replace(self, hive: str, model: str) -> None:
        try:
            worker = await self._dispatcher.worker_for(parse_ref(model), Hints(), Silent())
        except RbeeError as exc:
            logger.warning("cannot re-place %s from down hive %s: %s", model, hive, exc.message)
            return
        self.replaced.append((hive, model))
        logger.info("re-placed %s from down hive %s on %s (%s)", model, hive, worker.hive_id,
                    worker.id)

    async def run(self) -> None:
        # Ticks 10× per interval: a hive is flagged within a tenth of an interval of its
        # third missed report.
        while True:
            self.tick()
            await asyncio.sleep(self._interval / 10)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
