"""Read the devices off the event loop, with a deadline: a wedged GPU driver (NVML blocks in
`nvmlInit` or a per-device query) must not stop the hive's loop (its API, its telemetry, its
workers' event pipes).

The probe runs on a daemon thread (`core.detached`: one stuck for good holds no executor
thread and does not delay the hive's exit). Past the deadline the last devices that were
read stand in, said once in the log; while that probe is still stuck no second one starts
(a driver that hangs would otherwise collect a thread per report).
"""

from __future__ import annotations

import asyncio
import logging
import threading

from rbee.api.cluster import Device
from rbee.core.detached import run_detached
from rbee.hive.devices import DeviceProbe, cpu_device

logger = logging.getLogger(__name__)
PROBE_DEADLINE = 5.0  # seconds: NVML answers in milliseconds when the driver is well


class GuardedProbe:
    def __init__(self, probe: DeviceProbe, deadline: float = PROBE_DEADLINE) -> None:
        self._probe = probe
        self._deadline = deadline
        self._last: list[Device] = []  # the last good answer
        self._pending: asyncio.Future[list[Device]] | None = None
        self.stuck = False  # the pending probe overran its deadline

    async def devices(self) -> list[Device]:
        """The devices now, or the last good list if the probe does not answer in time."""
        pending = self._pending
        if pending is None:
            pending = self._pending = run_detached(self._probe.devices, name="device-probe")
            pending.add_done_callback(self._settled)
        elif self.stuck:
            return list(self._last)
        try:
            # shield: giving up waiting must not drop the answer, which becomes the last good
            return list(await asyncio.wait_for(asyncio.shield(pending), self._deadline))
        except TimeoutError:
            if not self.stuck:
                self.stuck = True
                logger.warning("device probe gave no answer within %.0fs (a hung GPU driver?); "
                               "reporting the last known devices until it does",
                               self._deadline)
        except Exception:  # noqa: S110 - logged once, in _settled
            pass
        return list(self._last)

    def _settled(self, done: asyncio.Future[list[Device]]) -> None:
        self._pending = None
        if done.cancelled():
            return
        error = done.exception()
        if error is not None:
            logger.warning("device probe failed: %s: %s", type(error).__name__, error)
        else:
            self._last = done.result()
        if self.stuck:
            self.stuck = False
            logger.warning("device probe answers again")


def first_devices(probe: DeviceProbe, deadline: float = PROBE_DEADLINE) -> list[Device]:
    """The devices at start-up, before any event loop runs. A probe that fails, or is still
    stuck after `deadline` (a driver wedged before the hive started), leaves the CPU only,
    said in the log: a hive that serves its CPU and reports beats one that never starts
    (its queen would kill and restart it, again and again)."""
    found: list[list[Device]] = []
    errors: list[BaseException] = []

    def probe_once() -> None:
        try:
            found.append(probe.devices())
        except Exception as exc:
            errors.append(exc)

    thread = threading.Thread(target=probe_once, name="device-probe-start", daemon=True)
    thread.start()
    thread.join(deadline)
    if found:
        return found[0]
    why = (f"failed ({type(errors[0]).__name__}: {errors[0]})" if errors
           else f"gave no answer within {deadline:.0f}s (a hung GPU driver?)")
    logger.error("device probe %s: this hive serves its CPU only until it is restarted", why)
    return [cpu_device()]
