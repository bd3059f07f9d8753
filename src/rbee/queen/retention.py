"""Retention: what the queen keeps, and for how long.

Job history (finished jobs and their events), stored Responses and binary results
(artifacts) older than their retention are deleted; a job's artifacts go with it, so a result
never outlives the job that made it. 0 keeps each until deleted.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from rbee.core.clock import Clock
from rbee.storage.artifacts import ArtifactStore
from rbee.storage.jobs import JobStore
from rbee.storage.responses import ResponseStore

logger = logging.getLogger(__name__)
MAX_PERIOD = 3600.0  # seconds between purges at the most


@dataclass(frozen=True)
class Purged:
    jobs: int
    responses: int
    artifacts: int


class Retention:
    def __init__(self, jobs: JobStore, responses: ResponseStore, artifacts: ArtifactStore,
                 clock: Clock, *, history: float, artifacts_for: float) -> None:
        self._jobs = jobs
        self._responses = responses
        self._artifacts = artifacts
        self._clock = clock
        self._history = history
        self._artifacts_for = artifacts_for

    def purge_once(self) -> Purged:
        """Delete what is past its retention now (blocking: run it on a thread)."""
        now = self._clock.time()
        jobs = responses = artifacts = 0
        if self._history > 0:
            gone = set(self._jobs.purge(now - self._history))
            jobs = len(gone)
            if gone:  # one pass over the artifacts, not one per job
                artifacts += sum(self._artifacts.delete(a.id) for a in self._artifacts.list()
                                 if a.owner in gone)
            responses = self._responses.purge(now - self._history)
        if self._artifacts_for > 0:
            artifacts += self._artifacts.purge(now - self._artifacts_for)
        return Purged(jobs, responses, artifacts)

    def period(self) -> float | None:
        """Seconds between purges: a tenth of the shortest retention (None: nothing expires)."""
        spans = [s for s in (self._history, self._artifacts_for) if s > 0]
        return min(min(spans) / 10, MAX_PERIOD) if spans else None

    async def run(self) -> None:
        period = self.period()
        if period is None:
            return
        while True:
            try:
                purged = await asyncio.to_thread(self.purge_once)
                if purged != Purged(0, 0, 0):
                    logger.info("retention removed %d job(s), %d response(s), %d artifact(s)",
                                purged.jobs, purged.responses, purged.artifacts)
            except OSError as exc:
                logger.warning("retention purge failed: %s", exc)
            await asyncio.sleep(period)
