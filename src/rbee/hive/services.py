"""What the hive's handlers use, and the preload the queen may ask for at launch.

Kept free of the web framework: the server builds these and starts the preloaded worker
before importing FastAPI, so the worker's start-up overlaps the hive's own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import httpx

from rbee.api.cluster import Device, SpawnWorker
from rbee.core.errors import RbeeError
from rbee.hive.devices import DeviceProbe
from rbee.hive.probe_guard import GuardedProbe, first_devices
from rbee.hive.supervisor import Supervisor
from rbee.hive.telemetry import TelemetryReporter
from rbee.models.catalog import parse_ref
from rbee.scheduler.placement import PlaceRequest, place
from rbee.scheduler.snapshot import ClusterSnapshot, HiveView

logger = logging.getLogger(__name__)


@dataclass
class HiveServices:
    hive_id: str
    probe: DeviceProbe
    supervisor: Supervisor
    http: httpx.AsyncClient
    reporter: TelemetryReporter | None = None
    token: str | None = None
    preload_model: str | None = None
    preload_threads: int | None = None
    first_devices: list[Device] | None = None  # read at start-up (the preload places on them)
    stall_limit: float = 0.0  # seconds without the loop running before the hive exits; 0: off
    # The probe for requests (`/v1/capabilities`): off the loop, on a daemon thread, with a
    # deadline; a wedged driver parks one thread at most and never delays the hive's exit.
    # The telemetry's own guard when there is one: one stuck probe, one last good answer.
    devices: GuardedProbe = field(init=False)

    def __post_init__(self) -> None:
        self.devices = self.reporter.devices if self.reporter else GuardedProbe(self.probe)


def preload(services: HiveServices) -> None:
    """Start the worker the queen asked for at launch, on this hive's best device (once).

    Local models start synchronously (this may run before the event loop); `hf:` models
    are spawned in the background, which needs the loop.
    """
    model, services.preload_model = services.preload_model, None
    if model is None:
        return
    devices = services.first_devices
    if devices is None:  # built without a start-up probe (tests): ask, bounded
        devices = first_devices(services.probe)
    snapshot = ClusterSnapshot((HiveView(services.hive_id, "", True, tuple(devices)),), ())
    decision, report = place(snapshot, PlaceRequest(model))
    if decision is None:
        logger.warning("cannot preload %s: %s", model, report.explain())
        return
    try:
        spec = SpawnWorker(model=model, device=decision.device,
                           threads=services.preload_threads)
        if parse_ref(model).source == "hf":
            services.supervisor.spawn(spec)
        else:
            services.supervisor.launch_now(spec)
    except RbeeError as exc:
        logger.warning("cannot preload %s: %s", model, exc.message)
