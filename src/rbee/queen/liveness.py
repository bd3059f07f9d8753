"""Liveness: a busy worker that stops answering is taken out of routing, its calls ended.

A SIGSTOPped worker, or one whose machine dropped off the network, keeps its connections
open and says nothing; its hive may still report it ready. So the queen probes every worker
that has calls in flight (and those it took out) with `GET /health`, which a worker answers
from its event loop while the engine generates on a thread. One that answers no probe for
`timeout` seconds is marked unresponsive in the registry (routing skips it) and every call
to it is aborted: calls that sent nothing fail over, streams end with an error frame. It is
routed to again once it answers.
"""

from __future__ import annotations

import asyncio
import logging

from rbee.core.clock import Clock
from rbee.queen.calls import UNRESPONSIVE, Calls
from rbee.queen.registry import Registry
from rbee.queen.transport import WorkerTransport

logger = logging.getLogger(__name__)


class Liveness:
    def __init__(self, registry: Registry, calls: Calls, transport: WorkerTransport,
                 clock: Clock, *, interval: float, timeout: float) -> None:
        self._registry = registry
        self._calls = calls
        self._transport = transport
        self._clock = clock
        self._interval = interval
        self._timeout = timeout
        self._last_ok: dict[str, float] = {}  # worker → when it last answered (or got busy)

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # a dead monitor would bring back every hang it exists for
                logger.exception("liveness tick failed; going on")
            await asyncio.sleep(self._interval)

    async def tick(self) -> None:
        # Busy workers are probed at the URL their calls use, even once the registry dropped
        # them (a failed-over request drops its worker; its other calls still need ending).
        targets = self._calls.busy()
        for worker_id in self._registry.unresponsive() - targets.keys():
            info = self._registry.find_worker(worker_id)
            if info is None:  # gone meanwhile (stopped, or its hive forgotten)
                self._registry.set_unresponsive(worker_id, False)
            else:
                targets[worker_id] = info.url
        for gone in self._last_ok.keys() - targets.keys():
            del self._last_ok[gone]
        now = self._clock.monotonic()
        for worker_id in targets:
            self._last_ok.setdefault(worker_id, now)
        order = list(targets.items())
        answers = await asyncio.gather(*(self._transport.probe(url + "/health")
                                         for _, url in order))
        now = self._clock.monotonic()
        for (worker_id, _), ok in zip(order, answers, strict=True):
            if ok:
                self._answered(worker_id, now)
            elif now - self._last_ok[worker_id] >= self._timeout:
                self._silent(worker_id, now)

    def _answered(self, worker_id: str, now: float) -> None:
        self._last_ok[worker_id] = now
        if worker_id in self._registry.unresponsive():
            logger.info("worker %s answers again; routing to it", worker_id)
            self._registry.set_unresponsive(worker_id, False)

    def _silent(self, worker_id: str, now: float) -> None:
        if worker_id not in self._registry.unresponsive():
            self._registry.set_unresponsive(worker_id)
        ended = self._calls.abort_worker(worker_id, UNRESPONSIVE)
        if ended:
            logger.warning("worker %s answered no probe for %.1fs: out of routing, %d "
                           "call(s) ended", worker_id, now - self._last_ok[worker_id], ended)
