"""A hive starting workers for months keeps a bounded number of their logs on disk."""

from __future__ import annotations

import os
from pathlib import Path

from rbee.hive import worker_logs


def test_only_the_newest_logs_of_finished_workers_are_kept(tmp_path: Path) -> None:
    for n in range(30):
        path = tmp_path / f"w{n}.log"
        path.write_text(f"worker {n}\n")
        os.utime(path, (1_000_000 + n, 1_000_000 + n))  # w29 the newest
    (tmp_path / "notes.txt").write_text("not a log")
    # w0 is the oldest file but its worker still runs: its open log stays
    assert worker_logs.prune(tmp_path, live={"w0"}, keep=10) == 19
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == sorted(["notes.txt", "w0.log", *(f"w{n}.log" for n in range(20, 30))])
    assert worker_logs.prune(tmp_path, live={"w0"}, keep=10) == 0  # nothing more to do


def test_a_missing_folder_is_nothing_to_prune(tmp_path: Path) -> None:
    assert worker_logs.prune(tmp_path / "absent", live=()) == 0
