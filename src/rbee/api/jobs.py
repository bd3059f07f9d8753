"""The job API: every operation is a job with an event stream."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rbee.api.openai import ChatMessage, SamplingFields


class _Op(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InferOp(SamplingFields):
    """`infer`: a prompt or chat messages, plus optional placement hints."""

    model_config = ConfigDict(extra="forbid")
    operation: Literal["infer"]
    model: str = Field(default="", max_length=512, description="empty: the default model")
    prompt: str | None = Field(default=None, max_length=1_000_000)
    messages: list[ChatMessage] | None = None
    hive_id: str | None = None
    device: str | None = None
    worker_id: str | None = None

    @model_validator(mode="after")
    def _prompt_or_messages(self) -> InferOp:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' or 'messages'")
        if self.messages is not None and not self.messages:
            raise ValueError("'messages' must not be empty")
        return self

    def chat_messages(self) -> list[dict[str, Any]]:
        if self.messages is not None:
            return [m.model_dump(exclude_none=True) for m in self.messages]
        return [{"role": "user", "content": self.prompt or ""}]


class StatusOp(_Op):
    operation: Literal["status"]


class WorkerSpawnOp(_Op):
    operation: Literal["worker_spawn"]
    model: str = Field(default="", max_length=512)
    hive_id: str | None = None
    device: str = "cpu"
    engine: str | None = None
    threads: int | None = Field(default=None, ge=1, le=1024)


class WorkerListOp(_Op):
    operation: Literal["worker_list"]
    hive_id: str | None = None


class WorkerStopOp(_Op):
    operation: Literal["worker_stop"]
    worker_id: str = Field(min_length=1, max_length=128)


class ModelListOp(_Op):
    operation: Literal["model_list"]


class ModelGetOp(_Op):
    operation: Literal["model_get"]
    model: str = Field(min_length=1, max_length=512)


OPERATIONS: dict[str, type[BaseModel]] = {
    "infer": InferOp,
    "status": StatusOp,
    "worker_spawn": WorkerSpawnOp,
    "worker_list": WorkerListOp,
    "worker_stop": WorkerStopOp,
    "model_list": ModelListOp,
    "model_get": ModelGetOp,
}


class JobCreated(BaseModel):
    job_id: str
    sse_url: str


class JobSummary(BaseModel):
    job_id: str
    operation: str
    state: str
    created_at: float
    finished_at: float | None = None
    request: dict[str, Any]
    result: dict[str, Any] | None = None
    error: str | None = None


class JobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[JobSummary]


EventType = Literal["narration", "token", "result", "progress", "done", "error", "cancelled"]
TERMINAL_EVENTS: frozenset[str] = frozenset({"done", "error", "cancelled"})


class JobEvent(BaseModel):
    seq: int
    event: EventType
    data: dict[str, Any]
