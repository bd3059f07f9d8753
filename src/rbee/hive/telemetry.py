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
from rbee.hive.supervisor import Supervisor

logger = logging.getLogger(__name__)


class TelemetryReporter:
    def __init__(self, *, hive_id: str, url: str, queen_url: str, token: str | None,
                 probe: DeviceProbe, supervisor: Supervisor, http: httpx.AsyncClient,
                 interval: float) -> None:
        self._hive_id = hive_id
        self._url = url
        self._queen_url = queen_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._probe = probe
        self._supervisor = supervisor
        self._http = http
        self._interval = interval
        self.sent = 0

    def snapshot(self) -> HiveTelemetry:
        return HiveTelemetry(hive_id=self._hive_id, url=self._url, version=__version__,
                             pid=os.getpid(), devices=self._probe.devices(),
                             workers=self._supervisor.workers())

    async def send_once(self) -> bool:
        body = self.snapshot().model_dump(mode="json")
        try:
            r = await self._http.post(f"{self._queen_url}/v1/hives/telemetry", json=body,
                                      headers=self._headers, timeout=5.0)
        except httpx.HTTPError as exc:
            logger.debug("telemetry to %s failed: %s", self._queen_url, exc)
            return False
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
