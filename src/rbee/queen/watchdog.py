"""Notice hives that went silent (re-place their models) and workers left idle (unload them).

Routing already skips a hive that missed 3 telemetry intervals (`Registry.is_up`); this
loop adds the reaction: each model that was served there and is now served nowhere else gets
a new worker on a live hive, when one has room. A hive that comes back simply reports again:
its surviving workers are re-adopted from its telemetry (or are gone, if it restarted).

Idle unload: a ready worker with nothing in flight for longer than its model's TTL is
stopped (Ollama's keep_alive), unless it is kept warm. The same tick wakes admission
queues, so requests waiting for a model admit as soon as a new worker is ready.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from rbee.core.errors import RbeeError
from rbee.core.states import WorkerState
from rbee.models.catalog import parse_ref
from rbee.queen.admission import Admission
from rbee.queen.dispatch import Dispatcher, Hints, Silent
from rbee.queen.registry import Registry

logger = logging.getLogger(__name__)
_SERVING = (WorkerState.STARTING, WorkerState.LOADING, WorkerState.READY)
_RECENT = 20  # re-placements and unloads remembered for status


@dataclass(frozen=True)
class IdleTTL:
    default: float = 0.0  # seconds; 0 = never unload for idleness
    per_model: Mapping[str, float] = field(default_factory=dict)  # model name or alias

    def __post_init__(self) -> None:
        object.__setattr__(self, "per_model", {_canonical(k): v
                                               for k, v in self.per_model.items()})

    def for_model(self, model: str) -> float:
        return self.per_model.get(model, self.default)


def _canonical(model: str) -> str:
    """An alias becomes the name workers report; other names are kept as given."""
    try:
        return parse_ref(model).name
    except RbeeError:
        return model


class Watchdog:
    def __init__(self, registry: Registry, dispatcher: Dispatcher, interval: float, *,
                 admission: Admission | None = None, idle_ttl: IdleTTL | None = None) -> None:
        self._registry = registry
        self._dispatcher = dispatcher
        self._interval = interval
        self._admission = admission
        self._ttl = idle_ttl or IdleTTL()
        self._down: set[str] = set()
        self._unloading: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        # For status: the most recent only, so a queen up for months keeps a bounded history.
        self.replaced: deque[tuple[str, str]] = deque(maxlen=_RECENT)  # (dead hive, model)
        self.unloaded: deque[str] = deque(maxlen=_RECENT)  # workers stopped for idleness
        self.unload_count = 0  # every idle unload so far (the metrics' counter)

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

    def idle_workers(self) -> list[str]:
        """Ready workers idle past their model's TTL (never kept-warm ones)."""
        expired = []
        for w in self._registry.workers():
            ttl = self._ttl.for_model(w.model)
            if (ttl > 0 and w.state is WorkerState.READY and w.id not in self._unloading
                    and not self._registry.is_kept_warm(w.id)
                    and self._registry.is_up(w.hive_id)
                    and self._registry.idle_for(w) > ttl):
                expired.append(w.id)
        return expired

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _unload(self, worker_id: str) -> None:
        self._unloading.add(worker_id)
        try:
            await self._dispatcher.stop(worker_id)
            self.unloaded.append(worker_id)
            self.unload_count += 1
            logger.info("unloaded idle worker %s", worker_id)
        except RbeeError as exc:
            logger.warning("cannot unload idle worker %s: %s", worker_id, exc.message)
        finally:
            self._unloading.discard(worker_id)

    def tick(self) -> None:
        if self._admission is not None:
            self._admission.wake_all()
        for worker_id in self.idle_workers():
            self._spawn(self._unload(worker_id), f"unload:{worker_id}")
        for hive in self.newly_down():
            logger.warning("hive %s missed 3 telemetry intervals: marked down, not routed to",
                           hive)
            for model in self.orphaned_models(hive):
                self._spawn(self._replace(hive, model), f"replace:{model}")

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
