"""Device detection: NVML for NVIDIA GPUs, a platform check for Apple Metal, psutil for CPU."""

from __future__ import annotations

import logging
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import psutil

from rbee.api.cluster import Device

logger = logging.getLogger(__name__)
_CPU_FLAGS_OF_NOTE = ("avx2", "avx512f", "amx_int8", "neon")


class DeviceProbe(Protocol):
    def devices(self) -> list[Device]: ...


def cpu_device() -> Device:
    mem = psutil.virtual_memory()
    cores = psutil.cpu_count(logical=True) or 1
    return Device(id="cpu", kind="cpu", name=f"{platform.processor() or platform.machine()} "
                  f"({cores} threads)", memory_total=mem.total, memory_free=mem.available,
                  compute=",".join(cpu_flags()) or None)


def cpu_flags() -> list[str]:
    """The CPU flags that change which llama.cpp kernels are safe and fast."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            present = set(line.split(":", 1)[1].split())
            return [f for f in _CPU_FLAGS_OF_NOTE if f in present]
    return []


def nvml_devices(nvml: Any = None) -> list[Device]:
    """CUDA devices through NVML; no library or no GPU means an empty list."""
    if nvml is None:
        try:
            import pynvml
        except ImportError:
            return []
        nvml = pynvml
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound and friends: no NVIDIA here
        logger.debug("NVML unavailable: %s", exc)
        return []
    try:
        found = []
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            name = nvml.nvmlDeviceGetName(handle)
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
            found.append(Device(
                id=f"cuda:{i}", kind="cuda",
                name=name.decode() if isinstance(name, bytes) else name,
                memory_total=int(mem.total), memory_free=int(mem.free), compute=f"{major}.{minor}",
                **gpu_readings(nvml, handle)))
        return found
    finally:
        nvml.nvmlShutdown()


def gpu_readings(nvml: Any, handle: Any) -> dict[str, float]:
    """Utilisation (%), temperature (°C) and power (W) of one GPU: each only where NVML
    gives it (many GPUs report no power, and a query can fail alone), so never a zero that
    was not measured."""
    readings: dict[str, float] = {}
    queries: tuple[tuple[str, Callable[[], Any]], ...] = (
        ("utilization", lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
        ("temperature", lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)),
        ("power_watts", lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0),  # milliwatts
    )
    for field, query in queries:
        try:
            readings[field] = float(query())
        except Exception as exc:  # NVMLError_NotSupported and friends: that reading only
            logger.debug("NVML gives no %s: %s", field, exc)
    return readings


def metal_devices(system: str | None = None, machine: str | None = None) -> list[Device]:
    """Apple Silicon shares RAM with the GPU: report unified memory as the Metal device's."""
    if (system or platform.system()) != "Darwin" or (machine or platform.machine()) != "arm64":
        return []
    mem = psutil.virtual_memory()
    return [Device(id="metal:0", kind="metal", name="Apple Silicon GPU",
                   memory_total=mem.total, memory_free=mem.available)]


class SystemProbe:
    """The real ladder: NVML, then Metal, and the CPU always."""

    def devices(self) -> list[Device]:
        return [*nvml_devices(), *metal_devices(), cpu_device()]


class StaticProbe:
    """Canned devices for tests."""

    def __init__(self, devices: list[Device]) -> None:
        self._devices = devices

    def devices(self) -> list[Device]:
        return list(self._devices)
