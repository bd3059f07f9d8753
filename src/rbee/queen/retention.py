"""Retention: binary results (artifacts) older than the queen keeps them are deleted."""

from __future__ import annotations

import asyncio
import logging

from rbee.core.clock import Clock
from rbee.storage.artifacts import ArtifactStore

logger = logging.getLogger(__name__)


async def keep_retention(artifacts: ArtifactStore, retention: float, clock: Clock) -> None:
    """Delete artifacts older than `retention` seconds, checking every tenth of it (at most
    hourly); 0 keeps them until deleted."""
    if retention <= 0:
        return
    while True:
        try:
            gone = await asyncio.to_thread(artifacts.purge, clock.time() - retention)
            if gone:
                logger.info("removed %d artifact(s) past their retention", gone)
        except OSError as exc:
            logger.warning("artifact purge failed: %s", exc)
        await asyncio.sleep(min(retention / 10, 3600.0))
