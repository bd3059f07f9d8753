"""Worker settings: CLI flag > RBEE_WORKER_* env > default."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from rbee.core.kinds import KIND_HELP, ModelKind
from rbee.web.listener import ListenerSettings


class WorkerSettings(ListenerSettings):
    model_config = SettingsConfigDict(
        env_prefix="RBEE_WORKER_", cli_kebab_case=True, cli_prog_name="rbee-worker",
        cli_implicit_flags=True,
    )

    worker_id: str = Field(default="worker", description="Id reported to the hive")
    model: str = Field(default="model", description="Public model name clients ask for")
    model_path: str = Field(default="", description="Weights file (GGUF for llama_cpp)")
    engine: str = Field(default="llama_cpp", description="Engine adapter: llama_cpp, onnx, "
                        "piper, whisper, diffusers, diffusers_video or fake")
    kind: ModelKind = Field(default="chat", description=KIND_HELP)
    tokenizer_path: str = Field(default="", description="tokenizer.json, for engines whose "
                                "tokenizer is a file apart from the weights (onnx)")
    device: str = Field(default="cpu", description='"cpu", "cuda:N" or "metal"')
    threads: int | None = Field(default=None, description="CPU threads for the engine "
                                "(unset: physical cores - 1)")
    context_length: int = Field(default=2048, description="Context window in tokens")
    temperature: float = Field(default=0.8, description="Default temperature for this model")
    top_p: float = Field(default=0.95, description="Default top_p for this model")
    top_k: int = Field(default=40, description="Default top_k for this model")
    repeat_penalty: float = Field(default=1.1, description="Repeat penalty for this model")
    slots: int | None = Field(default=None, ge=1, le=1024, description="Requests served at "
                              "once (unset: the engine's own; llama_cpp: 1; the fake engine "
                              "really serves this many)")
    max_n: int = Field(default=8, ge=1, le=128, description="Most choices (`n`) one request "
                       "may ask for; each is generated in turn")
    host: str = Field(default="127.0.0.1", description="Bind address")
    port: int = Field(default=0, description="Bind port (0: any)")
    fd: int | None = Field(default=None, description="Serve on this inherited socket")
    events_fd: int | None = Field(default=None, description="Write load events (JSON lines: "
                                  "progress, then ready or failed) to this inherited pipe")
    token: str | None = Field(default=None, description="Bearer token callers must present")
    parent_pid: int | None = Field(default=None, description="Exit when this process is gone")
    stall_timeout: float = Field(default=120.0, gt=0, description="Seconds the engine may "
                                 "produce nothing while requests wait before /health says "
                                 "'stalled' (503) and the queen stops routing here")
    stall_limit: float = Field(default=60.0, ge=0, description="Seconds the worker's event "
                               "loop may not run before the worker exits for its hive to see "
                               "a crash (a hang; 0: never)")
    fake_tokens_per_second: float = Field(default=0.0, description="Fake engine speed (0: max)")
    fake_load_seconds: float = Field(default=0.0, description="Fake engine load time")
    fake_fail_after: int | None = Field(default=None, description="Fake engine fails after N")
    fake_sentence_seconds: float = Field(default=0.0, ge=0, description="Fake speech engine: "
                                         "seconds per sentence")
    fake_segment_seconds: float = Field(default=0.0, ge=0, description="Fake transcription "
                                        "engine: seconds per segment")
    max_upload_bytes: int = Field(default=64 * 1024 * 1024, gt=0, description="Largest "
                                  "audio upload (the queen's own bound is smaller)")
    max_audio_seconds: float = Field(default=1800.0, gt=0, description="Longest audio "
                                     "transcribed (the queen may ask for less)")
    upload_dir: str = Field(default="", description="Where uploads are spooled while "
                            "decoded (default: the system's temp dir)")
    fake_speech_gate: str = Field(default="", description="Fake speech engine: its last "
                                  "sentence waits until this file exists (tests)")
    fake_step_seconds: float = Field(default=0.0, ge=0, description="Fake image and video "
                                     "engines: seconds per denoising step")
