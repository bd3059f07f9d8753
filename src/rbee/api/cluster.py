"""Internal protocol between queen, hive and worker (strict: unknown fields are refused)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rbee.core.kinds import KIND_HELP, ModelKind
from rbee.core.states import WorkerState

DeviceKind = Literal["cpu", "cuda", "metal"]
# Seconds a worker has left for a request: the client's deadline, passed on by the queen.
DEADLINE_HEADER = "X-Rbee-Timeout"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Device(_Strict):
    id: str = Field(description='"cpu", "cuda:N" or "metal:0"')
    kind: DeviceKind
    name: str
    memory_total: int = Field(description="bytes")
    memory_free: int = Field(description="bytes")
    compute: str | None = Field(default=None, description="CUDA compute capability or CPU flags")
    # Where NVML gives them (None: not an NVIDIA GPU, or the GPU does not report it).
    utilization: float | None = Field(default=None, ge=0, le=100, description="percent of "
                                      "the last sample period a kernel ran (NVML)")
    temperature: float | None = Field(default=None, description="degrees Celsius (NVML)")
    power_watts: float | None = Field(default=None, ge=0, description="power draw (NVML)")


class WorkerInfo(_Strict):
    id: str
    hive_id: str
    model: str = Field(description="the public model name clients ask for")
    model_path: str
    device: str
    engine: str
    kind: ModelKind = Field(default="chat", description=KIND_HELP)
    url: str
    pid: int | None = None
    state: WorkerState
    progress: float = 0.0
    stage: str = ""
    load: int = Field(default=0, description="requests running or queued")
    slots: int = Field(default=1, ge=1, le=1024, description="requests it serves at once "
                       "(what it advertised when ready; the queen admits as many)")
    error: str | None = None
    error_code: str | None = None
    memory_bytes: int | None = None


class SpawnWorker(_Strict):
    model: str = Field(min_length=1, max_length=512)
    device: str = "cpu"
    engine: str | None = Field(default=None, description="defaults to the model's engine")
    threads: int | None = Field(default=None, ge=1, le=1024)
    context_length: int | None = Field(default=None, ge=64, le=1_048_576)
    worker_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    slots: int | None = Field(default=None, ge=1, le=1024, description="requests it serves "
                              "at once, for engines that batch (default: the engine's own; "
                              "llama_cpp: 1)")


class HiveTelemetry(_Strict):
    hive_id: str
    url: str
    version: str
    pid: int
    devices: list[Device]
    workers: list[WorkerInfo]
    region: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class ReadyStatus(_Strict):
    ready: bool
    state: WorkerState
    progress: float
    stage: str
    error: str | None = None
    model: str
    load: int = 0
    slots: int = 1


class WorkerEvent(_Strict):
    """One line (JSON) a starting worker writes to the pipe its hive gave it (`--events-fd`).

    `progress` lines while the engine loads, then exactly one `ready` or `failed`, after which
    the worker closes the pipe: the end of the pipe before `ready` is a failed start.
    """

    event: Literal["progress", "ready", "failed"]
    progress: float = Field(default=0.0, ge=0.0, le=1.0, description="engine load, 0..1")
    stage: str = ""
    error: str | None = None
    slots: int | None = Field(default=None, ge=1, le=1024, description="with `ready`: "
                              "requests it serves at once")
