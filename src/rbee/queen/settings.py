"""Queen settings: CLI flag > RBEE_QUEEN_* env > default."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from rbee.models.catalog import DEFAULT_MODEL
from rbee.remote import hives_conf, wheelhouse


def default_state_dir() -> Path:
    return Path.home() / ".local" / "state" / "rbee"


class QueenSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RBEE_QUEEN_", cli_kebab_case=True, cli_prog_name="queen-rbee",
        cli_implicit_flags=True,
    )

    host: str = Field(default="127.0.0.1", description="Bind address")
    port: int = Field(default=7833, description="Bind port")
    api_token: str | None = Field(default=None, description="Bearer token API clients present "
                                  "(required for a non-loopback bind; prefer the env "
                                  "RBEE_QUEEN_API_TOKEN: argv is visible to every user)")
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
    hf_endpoint: str | None = Field(default=None, description="Hugging Face hub URL override")
    hives_conf: Path = Field(default_factory=hives_conf.default_path,
                             description="Machines for remote hives (ssh-config syntax)")
    public_url: str | None = Field(default=None, description="URL remote hives use to reach "
                                   "this queen (default: its address on the route to each)")
    wheelhouse: Path = Field(default_factory=wheelhouse.default_dir,
                             description="Cache of the wheels pushed to offline machines")
    hive_register_timeout: float = Field(default=60.0, description="Seconds a started hive "
                                         "has to register")
    preload_model: str | None = Field(
        default=None, description="Model the local hive starts loading at once (set by "
        "`rbee infer` when it starts a queen, so loading overlaps start-up)")
