"""Retry a request on another worker when its worker could not be reached at all.

Only requests that have not passed anything back to their client are retried: a stream
already under way ends with an error frame instead (mid-stream migration comes later).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from rbee.api.cluster import WorkerInfo
from rbee.core.errors import WorkerNotReady, WorkerUnreachable
from rbee.models.catalog import ModelRef
from rbee.queen.dispatch import Dispatcher, Hints, Narrator
from rbee.queen.registry import Registry

logger = logging.getLogger(__name__)
T = TypeVar("T")
ATTEMPTS = 3


async def with_failover(dispatcher: Dispatcher, registry: Registry, ref: ModelRef,
                        hints: Hints, narrator: Narrator,
                        attempt: Callable[[WorkerInfo], Awaitable[T]]) -> T:
    for n in range(1, ATTEMPTS + 1):
        worker = await dispatcher.worker_for(ref, hints, narrator)
        try:
            return await attempt(worker)
        except WorkerUnreachable as exc:
            if isinstance(exc, WorkerNotReady):
                # It answered, so its hive is fine; its next report tells what it really is.
                registry.drop_worker(worker.hive_id, worker.id)
            elif worker.id not in registry.unresponsive():
                # The worker (or its whole hive) is gone: stop routing to it until its hive
                # reports it again, and try the next one. (One that liveness took out is
                # already skipped, and its hive is fine: it stays listed until it answers.)
                registry.drop_worker(worker.hive_id, worker.id)
                registry.suspect(worker.hive_id)
            if n == ATTEMPTS or hints.worker_id is not None:
                raise
            logger.warning("retrying %s elsewhere: %s", ref.name, exc.message)
            narrator.narrate("retry", f"{worker.id} unreachable; retrying on another worker")
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
