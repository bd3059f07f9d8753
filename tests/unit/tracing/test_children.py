"""The local hive learns the queen's traces URL, whichever setting gave it, and its workers
inherit it; OTLP headers (which may hold a collector's credentials) are not secrets rbee
strips, so a local collector's auth works for all three."""

from __future__ import annotations

from pathlib import Path

from rbee.core.child_env import worker_env
from rbee.queen.local_hive import local_hive_for
from rbee.queen.settings import QueenSettings
from rbee.tracing.config import TRACES_ENV


def test_the_local_hive_and_its_workers_export_where_the_queen_does(tmp_path: Path) -> None:
    settings = QueenSettings(state_dir=tmp_path)
    hive = local_hive_for(settings, "t", "w", "http://collector:4318/v1/traces")
    env = hive._env
    assert env[TRACES_ENV] == "http://collector:4318/v1/traces"
    assert worker_env("wt", base=env)[TRACES_ENV] == "http://collector:4318/v1/traces"


def test_off_the_local_hive_is_told_nothing(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv(TRACES_ENV, raising=False)
    hive = local_hive_for(QueenSettings(state_dir=tmp_path), "t", "w")
    assert TRACES_ENV not in hive._env
