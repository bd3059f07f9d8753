"""Report devices and workers to the queen at a fixed interval, and at once on a change."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

import httpx

from rbee import __version__
from rbee.api.cluster import HiveTelemetry
from rbee.hive.devices import DeviceProbe
from rbee.hive.probe_guard import PROBE_DEADLINE, GuardedProbe
from rbee.hive.supervisor import Supervisor

logger = logging.getLogger(__name__)
_WARN_AFTER = 8  # consecutive failed reports (about 10 s of backed-off retries) before a warning


class TelemetryReporter:
    def __init__(self, *, hive_id: str, url: str, queen_url: str, token: str | None,
                 probe: DeviceProbe, supervisor: Supervisor, http: httpx.AsyncClient,
                 interval: float, region: str | None = None,
                 labels: dict[str, str] | None = None,
                 probe_deadline: float = PROBE_DEADLINE) -> None:
        self._region = region
        self._labels = labels or {}
        self._hive_id = hive_id
        self._url = url
        self.queen_url = queen_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        # Never blocks the loop for long; the hive's /v1/capabilities reads through it too.
        self.devices = GuardedProbe(probe, probe_deadline)
        self._supervisor = supervisor
        self._http = http
        self._interval = interval
        self.sent = 0
        self._misses = 0

    async def snapshot(self) -> HiveTelemetry:
        return HiveTelemetry(hive_id=self._hive_id, url=self._url, version=__version__,
                             pid=os.getpid(), devices=await self.devices.devices(),
                             workers=self._supervisor.workers(), region=self._region,
                             labels=self._labels)

    async def send_once(self) -> bool:
        body = (await self.snapshot()).model_dump(mode="json")
        try:
            r = await self._http.post(f"{self.queen_url}/v1/hives/telemetry", json=body,
                                      headers=self._headers, timeout=5.0)
        except httpx.HTTPError as exc:
            # Once per outage at WARNING (a remote hive's log must say why it is not
            # registered), after a few quick retries (a queen may still be starting).
            self._misses += 1
            level = logging.WARNING if self._misses == _WARN_AFTER else logging.DEBUG
            logger.log(level, "cannot reach the queen at %s: %s: %s", self.queen_url,
                       type(exc).__name__, exc)
            return False
        if self._misses >= _WARN_AFTER:
            logger.info("queen at %s reachable again", self.queen_url)
        self._misses = 0
        if r.status_code >= 400:
            logger.warning("queen refused telemetry: %s %s", r.status_code, r.text[:200])
            return False
        self.sent += 1
        return True

    async def run(self) -> None:
        """Forever: send, then wait for a change or the interval, whichever is first."""
        changed = self._supervisor.changed
        failures = 0
        while True:
            changed.clear()
            failures = 0 if await self.send_once() else failures + 1
            # A queen that is still starting (or restarting) is retried quickly, then less so.
            delay = min(self._interval, 0.05 * 2**failures) if failures else self._interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=delay)
