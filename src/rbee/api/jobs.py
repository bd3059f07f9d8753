"""The job API: every operation is a job with an event stream."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rbee.api.embeddings import Inputs, normalize_input
from rbee.api.openai import (
    MAX_TOOLS,
    ChatMessage,
    ModelName,
    NamedToolChoice,
    ResponseFormat,
    SamplingFields,
    Tool,
)
from rbee.api.speech import SpeechRequest
from rbee.api.transcription import TranscriptionRequest
from rbee.api.videos import VideoCreateRequest
from rbee.core.errors import InvalidRequest


class _Op(BaseModel):
    # Strict like the OpenAI models: `"keep_warm": 0` or `"threads": "4"` is a 400.
    model_config = ConfigDict(extra="forbid", strict=True)


class Placement(BaseModel):
    """Where a request may run, and for whom: the hints of the jobs that reach a worker."""

    hive_id: str | None = None
    device: str | None = None
    worker_id: str | None = None
    placement: Literal["pin", "prefer", "auto"] = "pin"
    priority: Literal["interactive", "batch"] = "interactive"
    tenant: str | None = Field(default=None, max_length=128)


class InferOp(SamplingFields, Placement):
    """`infer`: a prompt or chat messages, plus optional placement hints."""

    model_config = ConfigDict(extra="forbid")
    operation: Literal["infer"]
    model: ModelName = Field(default="", max_length=512, description="empty: the default model")
    prompt: str | None = Field(default=None, max_length=1_000_000)
    messages: list[ChatMessage] | None = None
    # The chat surface, as /v1/chat/completions takes it (the worker enforces it).
    tools: list[Tool] | None = Field(default=None, max_length=MAX_TOOLS)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)

    @model_validator(mode="after")
    def _prompt_or_messages(self) -> InferOp:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' or 'messages'")
        if self.messages is not None and not self.messages:
            raise ValueError("'messages' must not be empty")
        if self.n not in (None, 1):
            raise ValueError("'n': an infer job gives one answer (the OpenAI API gives more)")
        return self

    def chat_fields(self) -> dict[str, Any]:
        """What the worker's /v1/chat/completions takes from this job, as the API spells it."""
        return self.model_dump(include=CHAT_FIELDS, exclude_none=True, by_alias=True)

    def chat_messages(self) -> list[dict[str, Any]]:
        if self.messages is not None:
            return [m.model_dump(exclude_none=True) for m in self.messages]
        return [{"role": "user", "content": self.prompt or ""}]


CHAT_FIELDS = {"max_tokens", "temperature", "top_p", "top_k", "seed", "stop",
               "presence_penalty", "frequency_penalty", "logit_bias", "tools", "tool_choice",
               "parallel_tool_calls", "response_format", "logprobs", "top_logprobs"}


class ImageOp(_Op, Placement):
    """`image`: pictures from a prompt, as /v1/images/generations makes them, with a
    `progress` event after every denoising step. The pictures are stored as artifacts: the
    result names each (`artifact_id`, `url`, `bytes`), never carries it base64."""

    operation: Literal["image"]
    model: ModelName = Field(min_length=1, max_length=512, description="an image model")
    prompt: str = Field(min_length=1, max_length=32_000)
    size: str = Field(default="auto", max_length=32)
    n: int = Field(default=1, ge=1, le=10)
    output_format: Literal["png", "jpeg", "webp"] = "png"
    steps: int | None = Field(default=None, ge=1, le=500)
    seed: int | None = Field(default=None, ge=0, lt=2**63)

    @field_validator("size")
    @classmethod
    def _size(cls, value: str) -> str:
        from rbee.api.images import parse_size  # the same rule as the endpoint's

        try:
            parse_size(value)
        except InvalidRequest as exc:
            raise ValueError(exc.message) from None
        return value

    def fields(self) -> dict[str, Any]:
        """What the worker's /v1/images/generations takes from this job."""
        return self.model_dump(include={"model", "prompt", "size", "n", "output_format",
                                        "steps", "seed"}, exclude_none=True)


class StatusOp(_Op):
    operation: Literal["status"]


class WorkerSpawnOp(_Op):
    operation: Literal["worker_spawn"]
    model: ModelName = Field(default="", max_length=512)
    hive_id: str | None = None
    device: str | None = Field(default=None, description="unset: the scheduler decides")
    placement: Literal["pin", "prefer", "auto"] = "pin"
    keep_warm: bool = False
    engine: str | None = None
    threads: int | None = Field(default=None, ge=1, le=1024)
    slots: int | None = Field(default=None, ge=1, le=1024, description="requests it serves at "
                              "once, for engines that batch (default: the engine's own)")


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
    model: ModelName = Field(min_length=1, max_length=512)


class HiveListOp(_Op):
    operation: Literal["hive_list"]


class _HiveOp(_Op):
    hive_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")


class HiveGetOp(_HiveOp):
    """What the queen knows of a hive (no SSH)."""

    operation: Literal["hive_get"]


class HiveStatusOp(_HiveOp):
    """`hive_get` plus a look over SSH: reachable, installed, running, version."""

    operation: Literal["hive_status"]


class SshTestOp(_HiveOp):
    operation: Literal["ssh_test"]


class HiveInstallOp(_HiveOp):
    operation: Literal["hive_install"]


class HiveUninstallOp(_HiveOp):
    operation: Literal["hive_uninstall"]


class HiveStartOp(_HiveOp):
    operation: Literal["hive_start"]


class HiveStopOp(_HiveOp):
    operation: Literal["hive_stop"]


class HiveRefreshOp(_HiveOp):
    operation: Literal["hive_refresh_capabilities"]


_SCRIPT_NAME = r"^[A-Za-z0-9_.-]{1,64}$"
MAX_SCRIPT_BYTES = 256 * 1024
_MAX_VERSION = 2**31 - 1  # SQLite's integers are wider; a bigger number is a typo, not a version


class ScriptSaveOp(_Op):
    """Store a Lua scheduling script (it must compile); by default it becomes active."""

    operation: Literal["script_save"]
    name: str = Field(pattern=_SCRIPT_NAME)
    source: str = Field(min_length=1, max_length=MAX_SCRIPT_BYTES)
    activate: bool = True


class ScriptGetOp(_Op):
    """A script as in force, or one kept `version` of it (see `script_history`)."""

    operation: Literal["script_get"]
    name: str = Field(pattern=_SCRIPT_NAME)
    version: int | None = Field(default=None, ge=1, le=_MAX_VERSION)


class ScriptHistoryOp(_Op):
    """The kept versions of a script, newest first: when, and by which key."""

    operation: Literal["script_history"]
    name: str = Field(pattern=_SCRIPT_NAME)


class ScriptRollbackOp(_Op):
    """Put a kept version of a script back in force, as the active script."""

    operation: Literal["script_rollback"]
    name: str = Field(pattern=_SCRIPT_NAME)
    version: int = Field(ge=1, le=_MAX_VERSION)


class ScriptListOp(_Op):
    operation: Literal["script_list"]


class ScriptDeleteOp(_Op):
    operation: Literal["script_delete"]
    name: str = Field(pattern=_SCRIPT_NAME)


class ScriptActivateOp(_Op):
    """Make a stored script the active one; `name: null` goes back to the built-in policy."""

    operation: Literal["script_activate"]
    name: str | None = Field(default=None, pattern=_SCRIPT_NAME)


class ExplainRequest(_Op):
    """Where would a request for `model` go on the live cluster, and why (changes nothing)."""

    model: ModelName = Field(default="", max_length=512)
    hive_id: str | None = None
    device: str | None = None
    placement: Literal["pin", "prefer", "auto"] = "pin"
    tenant: str | None = Field(default=None, max_length=128)
    priority: Literal["interactive", "batch"] = "interactive"
    source: str | None = Field(default=None, max_length=MAX_SCRIPT_BYTES,
                               description="a script to decide instead of the active one")


class ScriptCheckRequest(_Op):
    """Does this script compile in the queen's sandbox (nothing is stored or run)?"""

    source: str = Field(min_length=1, max_length=MAX_SCRIPT_BYTES)
    name: str = Field(default="script", pattern=_SCRIPT_NAME)


class ScriptCheck(BaseModel):
    ok: bool
    hooks: list[str] = Field(default_factory=list, description="route and/or place")
    message: str | None = Field(default=None, description="why it does not compile")
    line: int | None = Field(default=None, description="the line the error names")


class ScriptTestOp(ExplainRequest):
    operation: Literal["script_test"]


class EmbedOp(_Op, Placement):
    """`embed`: vectors for one or more texts (or token-id lists), as /v1/embeddings makes
    them; the result carries them as JSON floats."""

    operation: Literal["embed"]
    model: ModelName = Field(default="", max_length=512,
                             description="empty: the built-in embedding model")
    input: Any = Field(description="a string, an array of strings, an array of token ids, "
                       "or an array of token-id arrays")
    dimensions: int | None = Field(default=None, ge=1, le=65_536)

    @field_validator("input", mode="before")
    @classmethod
    def _input(cls, value: object) -> Inputs:
        return normalize_input(value)


class VideoOp(VideoCreateRequest, Placement):
    """`video`: a video from a prompt, as POST /v1/videos makes it (a video *is* this job);
    its stream carries a `progress` event per denoising step, and its result the artifact
    (id, download URL, size, media type), never the bytes."""

    model_config = ConfigDict(extra="forbid", strict=True)
    operation: Literal["video"]


class SpeakOp(SpeechRequest, Placement):
    """`speak`: speech from text, as POST /v1/audio/speech makes it; the audio is stored as an
    artifact and the result names it (id, download URL, size, media type), never the bytes.
    Its stream narrates the worker, the first audio and the stored file."""

    model_config = ConfigDict(extra="forbid", strict=True)
    operation: Literal["speak"]

    def fields(self) -> dict[str, Any]:
        """What the worker's /v1/audio/speech takes from this job."""
        return self.model_dump(include=set(SpeechRequest.model_fields), exclude_none=True)


class TranscribeOp(TranscriptionRequest, Placement):
    """`transcribe`: the text of an uploaded audio file (POST /v1/files, then its `file_id`),
    as /v1/audio/transcriptions (`task` transcribe) or /v1/audio/translations (translate)
    make it; the result carries the transcript (text, small), the audio stays a file."""

    model_config = ConfigDict(extra="forbid", strict=True)
    operation: Literal["transcribe"]
    file_id: str = Field(min_length=1, max_length=64, description="an uploaded file's id")
    task: Literal["transcribe", "translate"] = "transcribe"

    @model_validator(mode="after")
    def _whole(self) -> TranscribeOp:
        # InvalidRequest, not ValueError: pydantic would drop the field's name (a model check)
        if self.stream:
            raise InvalidRequest("a job's transcript is its result (follow the job's own "
                                 "stream): leave stream out", param="stream")
        if self.task == "translate" and self.language is not None:
            raise InvalidRequest("a translation is to English: leave language out",
                                 param="language")
        return self


OPERATIONS: dict[str, type[BaseModel]] = {
    "infer": InferOp,
    "embed": EmbedOp,
    "image": ImageOp,
    "video": VideoOp,
    "speak": SpeakOp,
    "transcribe": TranscribeOp,
    "status": StatusOp,
    "worker_spawn": WorkerSpawnOp,
    "worker_list": WorkerListOp,
    "worker_stop": WorkerStopOp,
    "model_list": ModelListOp,
    "model_get": ModelGetOp,
    "hive_list": HiveListOp,
    "hive_get": HiveGetOp,
    "hive_status": HiveStatusOp,
    "ssh_test": SshTestOp,
    "hive_install": HiveInstallOp,
    "hive_uninstall": HiveUninstallOp,
    "hive_start": HiveStartOp,
    "hive_stop": HiveStopOp,
    "hive_refresh_capabilities": HiveRefreshOp,
    "script_save": ScriptSaveOp,
    "script_get": ScriptGetOp,
    "script_list": ScriptListOp,
    "script_delete": ScriptDeleteOp,
    "script_activate": ScriptActivateOp,
    "script_test": ScriptTestOp,
    "script_history": ScriptHistoryOp,
    "script_rollback": ScriptRollbackOp,
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
