"""Queen settings: CLI flag > RBEE_QUEEN_* env > default."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import ByteSize, Field, IPvAnyNetwork
from pydantic_settings import SettingsConfigDict

from rbee.models.catalog import DEFAULT_MODEL
from rbee.remote import hives_conf, wheelhouse
from rbee.web.listener import ListenerSettings


def default_state_dir() -> Path:
    return Path.home() / ".local" / "state" / "rbee"


class QueenSettings(ListenerSettings):
    model_config = SettingsConfigDict(
        env_prefix="RBEE_QUEEN_", cli_kebab_case=True, cli_prog_name="queen-rbee",
        cli_implicit_flags=True,
    )

    host: str = Field(default="127.0.0.1", description="Bind address")
    port: int = Field(default=7833, description="Bind port")
    api_token: str | None = Field(default=None, description="Bearer token API clients present "
                                  "(required for a non-loopback bind; prefer the env "
                                  "RBEE_QUEEN_API_TOKEN: argv is visible to every user)")
    # Browser protection (web/origin.py): JSON lists, e.g. '["http://localhost:3000"]'.
    allowed_hosts: list[str] = Field(default_factory=list, description="Host names the API "
                                     "answers besides loopback, IP addresses, the bind "
                                     "address and public_url's (JSON list; [\"*\"]: any). "
                                     "Empty with an API token set: any")
    allowed_origins: list[str] = Field(default_factory=list, description="Web page origins "
                                       "allowed to call the API (CORS), JSON list, e.g. "
                                       "[\"http://localhost:3000\"]; [\"*\"]: any")
    # Prometheus metrics (GET /metrics; docs/metrics.md).
    metrics: bool = Field(default=True, description="Record metrics and serve them at "
                          "/metrics (off: nothing is recorded, /metrics is a 404)")
    metrics_token: str | None = Field(default=None, min_length=16, description="A bearer "
                                      "token that may read /metrics and nothing else "
                                      "(Prometheus's credentials_file); prefer the env "
                                      "RBEE_QUEEN_METRICS_TOKEN. Operator and admin keys "
                                      "may read /metrics too. At least 16 characters: an "
                                      "empty one (a token file the queen could not read) "
                                      "would let anyone in")
    metrics_public: bool = Field(default=False, description="Serve /metrics without any "
                                 "credential (refused unless the queen binds loopback)")
    state_dir: Path = Field(default_factory=default_state_dir, description="SQLite db, logs, pid")
    local_hive: bool = Field(default=True, description="Start and own a hive on this machine")
    hive_port: int = Field(default=7835, description="Port of the local hive")
    hive_home: Path | None = Field(default=None, description="Model cache of the local hive")
    default_model: str = Field(default=DEFAULT_MODEL, description="Model for requests naming none")
    worker_threads: int | None = Field(default=None, description="Engine threads per worker "
                                       "(unset: physical cores - 1)")
    telemetry_interval: float = Field(default=2.0, description="Hive report interval, seconds")
    spawn_timeout: float = Field(default=120.0, description="Seconds to wait for a worker")
    max_body_bytes: int = Field(default=8 * 1024 * 1024, description="Largest request body")
    max_upload_bytes: int = Field(default=25 * 1000 * 1000, gt=0, description="Largest "
                                  "audio file a transcription may upload (OpenAI: 25 MB); "
                                  "spooled to disk, never held in memory")
    max_audio_seconds: float = Field(default=1800.0, gt=0, description="Longest audio a "
                                     "transcription may carry (checked by the worker as it "
                                     "decodes)")
    upload_dir: Path | None = Field(default=None, description="Where uploads are spooled "
                                    "while forwarded (default: state_dir/uploads)")
    max_embedding_inputs: int = Field(default=2048, ge=1, le=2048, description="Most inputs "
                                      "one /v1/embeddings request may carry (OpenAI: 2048)")
    images_max_n: int = Field(default=4, ge=1, le=10, description="Most images (`n`) one "
                              "image request may ask for")
    images_max_side: int = Field(default=2048, ge=8, le=4096, description="Largest width or "
                                 "height (pixels) an image request may ask for")
    images_max_upload_bytes: int = Field(default=4 * 1024 * 1024, ge=1, description="Largest "
                                         "picture (and mask) an image edit may upload")
    hf_endpoint: str | None = Field(default=None, description="Hugging Face hub URL override")
    hives_conf: Path = Field(default_factory=hives_conf.default_path,
                             description="Machines for remote hives (ssh-config syntax)")
    public_url: str | None = Field(default=None, description="URL remote hives use to reach "
                                   "this queen (default: its address on the route to each)")
    # Behind a reverse proxy every request comes from the proxy's address: the audit log, the
    # dashboard's login throttle and every per-address decision would see one client.
    trusted_proxies: list[IPvAnyNetwork] = Field(
        default_factory=list, description="Reverse proxies (addresses or CIDR networks, JSON "
        "list, e.g. '[\"10.0.0.5\"]') whose X-Forwarded-For and X-Forwarded-Proto are "
        "believed: a request through one of them is the forwarded client's. Empty: the "
        "headers are ignored (anyone could forge them)")
    wheelhouse: Path = Field(default_factory=wheelhouse.default_dir,
                             description="Cache of the wheels pushed to offline machines")
    hive_register_timeout: float = Field(default=60.0, description="Seconds a started hive "
                                         "has to register")
    routing_policy: Literal["least-loaded", "round-robin"] = Field(
        default="least-loaded", description="Built-in routing policy")
    placement_policy: Literal["best-device", "bin-pack", "spread", "affinity"] = Field(
        default="best-device", description="Built-in placement policy")
    memory_budget: ByteSize | None = Field(default=None, description="Cap on the memory rbee "
                                           "places on each device, e.g. 8GiB (unset: all)")
    max_queue: int = Field(default=64, ge=0, description="Requests that may wait per model "
                           "before 429")
    idle_ttl: float = Field(default=300.0, ge=0, description="Seconds an idle worker stays "
                            "loaded (0: forever)")
    model_ttl: dict[str, float] = Field(default_factory=dict, description="Per-model idle "
                                        "TTL, JSON: {\"smollm2\": 600}")
    keep_warm: list[str] = Field(default_factory=list, description="Models never unloaded "
                                 "(idle or eviction), JSON list")
    preload_model: str | None = Field(
        default=None, description="Model the local hive starts loading at once (set by "
        "`rbee infer` when it starts a queen, so loading overlaps start-up)")
    # Deadlines on every queen→worker call (rbee.queen.transport.Deadlines).
    worker_connect_timeout: float = Field(default=3.0, gt=0, description="Seconds to connect "
                                          "to a worker")
    # Generous backstops: a hung or unreachable worker is caught in seconds by liveness; these
    # end a live worker whose engine is stuck, and must cover a long prompt's evaluation on a
    # slow CPU (a chat stream's first frame comes at once, its first token after the prompt).
    worker_first_byte_timeout: float = Field(default=300.0, gt=0, description="Seconds a "
                                             "worker has to start a stream (headers and "
                                             "first data frame)")
    worker_idle_timeout: float = Field(default=120.0, gt=0, description="Longest silence "
                                       "between a stream's tokens (keep-alives don't count)")
    worker_response_timeout: float = Field(default=600.0, gt=0, description="Seconds a "
                                           "worker has for a whole non-streamed answer")
    # Both clients keep the same deadlines (tests/unit/queen/test_transport.py); httptools
    # is the default because the queen's added latency budget is half a millisecond.
    worker_transport: Literal["httptools", "aiohttp"] = Field(
        default="httptools", description="HTTP client for queen→worker calls: httptools "
        "(lean, ~0.1 ms less per request) or aiohttp")
    liveness_interval: float = Field(default=1.0, gt=0, description="Seconds between probes "
                                     "of busy workers")
    liveness_timeout: float = Field(default=5.0, gt=0, description="A busy worker that "
                                    "answers no probe for this long is taken out of routing "
                                    "and its requests are ended")
    max_request_timeout: float = Field(default=3600.0, gt=0, description="Cap on a client's "
                                       "own deadline (X-Stainless-Timeout / X-Request-Timeout)")
    # Videos (OpenAI's Videos API) and the artifacts they leave.
    video_model: str = Field(default="", description="Model for video requests naming none "
                             "or OpenAI's (sora-2…): a diffusers video pipeline, file:/folder "
                             "or hf:org/repo (empty: such requests are a 400)")
    video_fps: int = Field(default=8, ge=1, le=60, description="Frames per second of made "
                           "videos: frames = seconds x this")
    video_max_frames: int = Field(default=96, ge=1, le=10_000, description="Most frames a "
                                  "video may have (seconds x fps)")
    video_max_pixels: int = Field(default=1792 * 1024, ge=64, description="Largest width x "
                                  "height (OpenAI's sizes are at most 1792x1024)")
    video_steps: int = Field(default=25, ge=1, le=500, description="Denoising steps of a "
                             "video that names none (rbee's `steps` field)")
    video_max_bytes: int = Field(default=2 * 1024**3, ge=1024, description="Largest MP4 the "
                                 "queen stores")
    artifact_retention: float = Field(default=7 * 86_400.0, ge=0, description="Seconds "
                                      "binary results (videos) are kept after they are made "
                                      "(0: as long as their job); never longer than the job")
    history_retention: float = Field(default=30 * 86_400.0, ge=0, description="Seconds "
                                     "finished jobs (their events, results and artifacts) and "
                                     "stored Responses are kept (0: until deleted)")
    audit_retention_days: float = Field(default=2557.0, gt=0, description="Days audit "
                                        "entries stay in the database (7 years); older ones "
                                        "are archived to files whose chain continues")
    audit_archive_dir: Path | None = Field(default=None, description="Where audit archives "
                                           "go (default: STATE_DIR/audit-archive)")
    audit_key_file: Path | None = Field(default=None, description="The key that seals audit "
                                        "entries (created on first start; default: "
                                        "STATE_DIR/audit-seal.key). Keep it where whoever can "
                                        "write the database cannot, and a copy for auditors")

    otlp_endpoint: str | None = Field(default=None, max_length=2048, description="Export "
                                      "traces over OTLP/HTTP to this collector (e.g. "
                                      "http://127.0.0.1:4318; a URL without a path gets "
                                      "/v1/traces). Unset: the standard "
                                      "OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, else no tracing. "
                                      "The local hive and its workers export there too "
                                      "(docs/tracing.md)")

    def audit_archives(self) -> Path:
        return self.audit_archive_dir or self.state_dir / "audit-archive"

    def audit_key(self) -> Path:
        return self.audit_key_file or self.state_dir / "audit-seal.key"
