from __future__ import annotations

from types import SimpleNamespace

from rbee.hive.devices import SystemProbe, cpu_device, metal_devices, nvml_devices

GB = 2**30


class FakeNvml:
    def __init__(self, count: int, fail_init: bool = False) -> None:
        self.count = count
        self.fail_init = fail_init
        self.shutdown = 0

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None:
        self.shutdown += 1

    def nvmlDeviceGetCount(self) -> int:
        return self.count

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, h: int) -> bytes:
        return b"NVIDIA H100 80GB HBM3" if h == 0 else b"NVIDIA A100"

    def nvmlDeviceGetMemoryInfo(self, h: int) -> SimpleNamespace:
        return SimpleNamespace(total=80 * GB, free=(70 - h) * GB)

    def nvmlDeviceGetCudaComputeCapability(self, h: int) -> tuple[int, int]:
        return (9, 0)


def test_nvml_devices_are_listed_with_memory() -> None:
    nvml = FakeNvml(2)
    devs = nvml_devices(nvml)
    assert [d.id for d in devs] == ["cuda:0", "cuda:1"]
    assert devs[0].name == "NVIDIA H100 80GB HBM3" and devs[1].memory_free == 69 * GB
    assert devs[0].compute == "9.0" and nvml.shutdown == 1


def test_no_nvidia_library_means_no_cuda_devices() -> None:
    assert nvml_devices(FakeNvml(0, fail_init=True)) == []


def test_metal_only_on_apple_silicon() -> None:
    assert metal_devices("Darwin", "arm64")[0].id == "metal:0"
    assert metal_devices("Darwin", "x86_64") == [] and metal_devices("Linux", "arm64") == []


def test_cpu_always_present_with_real_memory() -> None:
    cpu = cpu_device()
    assert cpu.id == "cpu" and 0 < cpu.memory_free <= cpu.memory_total
    assert SystemProbe().devices()[-1].id == "cpu"


class NotSupported(Exception):
    """What NVML raises for a reading a GPU does not give (NVMLError_NotSupported)."""


class ReadingNvml(FakeNvml):
    """GPU 0 gives every reading; GPU 1 (a card without power sensing) no power draw."""

    NVML_TEMPERATURE_GPU = 0

    def nvmlDeviceGetUtilizationRates(self, h: int) -> SimpleNamespace:
        return SimpleNamespace(gpu=87 - h, memory=40)

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return 61 + h

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        if h == 1:
            raise NotSupported("Not Supported")
        return 312_500  # milliwatts


def test_nvml_readings_are_reported_where_the_gpu_gives_them() -> None:
    gpu0, gpu1 = nvml_devices(ReadingNvml(2))
    assert (gpu0.utilization, gpu0.temperature, gpu0.power_watts) == (87.0, 61.0, 312.5)
    # A reading that fails is absent, never a zero that was not measured.
    assert (gpu1.utilization, gpu1.temperature, gpu1.power_watts) == (86.0, 62.0, None)


def test_devices_without_nvml_readings_carry_none() -> None:
    (gpu,) = nvml_devices(FakeNvml(1))  # an NVML without the reading calls
    assert gpu.utilization is None and gpu.temperature is None and gpu.power_watts is None
    cpu = cpu_device()
    assert cpu.utilization is None and cpu.temperature is None and cpu.power_watts is None
