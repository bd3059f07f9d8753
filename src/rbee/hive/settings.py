"""Hive settings: CLI flag > RBEE_HIVE_* env > default."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from rbee.web.listener import ListenerSettings


def default_home() -> Path:
    return Path.home() / ".local" / "share" / "rbee"


class HiveSettings(ListenerSettings):
    model_config = SettingsConfigDict(
        env_prefix="RBEE_HIVE_", cli_kebab_case=True, cli_prog_name="rbee-hive",
        cli_implicit_flags=True,
    )

    hive_id: str = Field(default="localhost", description="This hive's name at the queen")
    host: str = Field(default="127.0.0.1", description="Bind address")
    port: int = Field(default=7835, description="Bind port")
    advertise_host: str | None = Field(default=None, description="Address the queen uses")
    queen_url: str | None = Field(default=None, description="Queen to report telemetry to")
    token: str | None = Field(default=None, description="Bearer token for the hive API")
    telemetry_interval: float = Field(default=2.0, description="Seconds between reports")
    home: Path = Field(default_factory=default_home, description="Model cache and state")
    hf_endpoint: str | None = Field(default=None, description="Hugging Face hub URL override")
    worker_threads: int | None = Field(default=None, description="Default engine threads "
                                       "(unset: physical cores - 1)")
    stop_grace: float = Field(default=3.0, description="Seconds between SIGTERM and SIGKILL")
    stall_limit: float = Field(default=60.0, ge=0, description="Seconds the hive's event loop "
                               "may not run before the hive exits for its supervisor to "
                               "restart it (a hang; 0: never)")
    preload_model: str | None = Field(default=None, description="Start a worker for this "
                                      "model at once, on the best device")
    parent_pid: int | None = Field(default=None, description="Exit when this process is gone")
    region: str | None = Field(default=None, description="Region reported to the queen "
                               "(scheduling scripts may route on it)")
    labels: str = Field(default="", description="Labels reported to the queen, "
                        "'key=value, key=value' (as in hives.conf)")
