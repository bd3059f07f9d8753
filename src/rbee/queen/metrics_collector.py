"""Metrics read when Prometheus scrapes: the state lives in the registry, admission, the
scheduling policy, the dispatcher and the watchdog, and is never mirrored into gauges on the
request path. Runs on the event loop (the /metrics route calls it there), like everything
that touches that state.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rbee.api.cluster import Device
from rbee.queen.admission import Admission
from rbee.queen.dispatch import Dispatcher
from rbee.queen.policy import SchedulingPolicy
from rbee.queen.registry import Registry
from rbee.scheduler.snapshot import device_key

_DEVICE = ["hive", "device", "kind"]
# Device fields NVML may fill: (metric, help, field, scale to the metric's unit).
_GPU_READINGS: tuple[tuple[str, str, str, float], ...] = (
    ("rbee_gpu_utilization_ratio", "Share of the last sample period a kernel ran (NVML)",
     "utilization", 0.01),
    ("rbee_gpu_temperature_celsius", "GPU temperature (NVML)", "temperature", 1.0),
    ("rbee_gpu_power_watts", "GPU power draw (NVML)", "power_watts", 1.0),
)


@dataclass(frozen=True)
class ClusterSources:
    registry: Registry
    admission: Admission
    policy: SchedulingPolicy
    dispatcher: Dispatcher
    idle_unloads: Callable[[], int]  # workers the watchdog stopped for idleness, so far
    model_label: Callable[[str], str]  # queen.metrics.ModelLabels


class ClusterCollector(Collector):
    """Hives, workers, devices, queues, evictions and the scheduling script's counters."""

    def __init__(self, sources: ClusterSources) -> None:
        self._s = sources

    def describe(self) -> Iterable[Metric]:
        return []  # names are checked against the registry's at first scrape, not at start

    def collect(self) -> Iterator[Metric]:
        yield from self._hives()
        yield self._workers()
        yield from self._devices()
        yield from self._queues()
        yield from self._scheduler()

    def _hives(self) -> Iterator[Metric]:
        reg = self._s.registry
        up = GaugeMetricFamily("rbee_hive_up", "1 when the hive reports (telemetry within 3 "
                               "intervals), 0 when it is down", labels=["hive", "region"])
        for hive in reg.hive_ids():
            up.add_metric([hive, reg.hive_region(hive) or ""], 1.0 if reg.is_up(hive) else 0.0)
        yield up

    def _workers(self) -> Metric:
        family = GaugeMetricFamily("rbee_workers", "Workers by state (unknown: its hive is "
                                   "down or it answers no probe) and kind",
                                   labels=["state", "kind"])
        counts = Counter((w.state.value, w.kind) for w in self._s.registry.listed_workers())
        for (state, kind), n in sorted(counts.items()):
            family.add_metric([state, kind], n)
        return family

    def _devices(self) -> Iterator[Metric]:
        reg = self._s.registry
        total = GaugeMetricFamily("rbee_device_memory_total_bytes", "Device memory",
                                  labels=_DEVICE)
        used = GaugeMetricFamily("rbee_device_memory_used_bytes", "Device memory in use "
                                 "(by anything: total - free, as the hive measured it)",
                                 labels=_DEVICE)
        reserved = GaugeMetricFamily("rbee_device_memory_reserved_bytes", "Device memory "
                                     "rbee reserved for its workers there", labels=_DEVICE)
        readings = [GaugeMetricFamily(name, text, labels=_DEVICE)
                    for name, text, _, _ in _GPU_READINGS]
        held = reg.reservations.totals()[0]
        for hive in reg.hive_ids():
            telemetry = reg.telemetry(hive)
            for dev in telemetry.devices if telemetry is not None else ():
                labels = [hive, dev.id, dev.kind]
                total.add_metric(labels, dev.memory_total)
                used.add_metric(labels, dev.memory_total - dev.memory_free)
                reserved.add_metric(labels, held.get(device_key(hive, dev.id), 0))
                _add_readings(readings, labels, dev)
        yield from (total, used, reserved, *readings)

    def _queues(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("rbee_queue_depth", "Requests waiting for a slot, per "
                                  "model", labels=["model"])
        running = GaugeMetricFamily("rbee_requests_running", "Requests admitted and not "
                                    "yet finished, per model", labels=["model"])
        per_model: dict[str, tuple[int, int]] = {}
        for model, queued, active in self._s.admission.lanes():
            label = self._s.model_label(model)  # "other" sums what is past the cap
            q, a = per_model.get(label, (0, 0))
            per_model[label] = (q + queued, a + active)
        for label, (queued, active) in sorted(per_model.items()):
            depth.add_metric([label], queued)
            running.add_metric([label], active)
        yield depth
        yield running

    def _scheduler(self) -> Iterator[Metric]:
        evictions = CounterMetricFamily("rbee_evictions", "Workers stopped by the queen: "
                                        "room (to place another model), idle (past its TTL)",
                                        labels=["reason"])
        evictions.add_metric(["room"], self._s.dispatcher.evictions)
        evictions.add_metric(["idle"], self._s.idle_unloads())
        yield evictions
        stats = self._s.policy.stats  # reset when a script is applied: a counter reset
        for name, text, value in (
                ("rbee_scheduler_script_calls", "Calls into the scheduling script", stats.calls),
                ("rbee_scheduler_script_errors", "Script calls that failed (error, time or "
                 "memory limit, bad answer); the built-in policy decided", stats.failures),
                ("rbee_scheduler_script_fallbacks", "Script calls with no opinion (nil); the "
                 "built-in policy decided", stats.fallbacks)):
            family = CounterMetricFamily(name, text)
            family.add_metric([], value)
            yield family
        applied = GaugeMetricFamily("rbee_scheduler_script_applied", "1 while a scheduling "
                                    "script is applied and deciding, 0 otherwise (none, or "
                                    "disabled after repeated failures)")
        applied.add_metric([], 1.0 if self._s.policy.deciding is not None else 0.0)
        yield applied


def _add_readings(families: list[GaugeMetricFamily], labels: list[str], dev: Device) -> None:
    for family, (_, _, field, scale) in zip(families, _GPU_READINGS, strict=True):
        value = getattr(dev, field)
        if value is not None:
            family.add_metric(labels, value * scale)
