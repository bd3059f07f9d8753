"""Issue 10.2: rbee's state (tokens, prompts, answers) is readable by its owner only."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import huggingface_hub
import pytest

from rbee.core.private import open_private_log, private_dir
from rbee.hive.downloads import resolve
from rbee.hive.launcher import SubprocessLauncher
from rbee.models.catalog import parse_ref
from rbee.remote.wheelhouse import WheelhouseBuilder


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """The usual default: files 0644, folders 0755, unless rbee says otherwise."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_private_dir_creates_0700_and_tightens_an_older_tree(tmp_path: Path) -> None:
    fresh = private_dir(tmp_path / "new" / "state")
    assert mode(fresh) == 0o700
    old = tmp_path / "old"
    (old / "logs").mkdir(parents=True, mode=0o755)
    old.chmod(0o755)
    (old / "queen.db").write_text("tokens")
    (old / "logs" / "hive.log").write_text("prompts")
    (old / "run").write_text("#!/bin/sh\n")
    (old / "run").chmod(0o755)
    outside = tmp_path / "outside.txt"
    outside.write_text("not ours to change")
    (old / "link").symlink_to(outside)
    private_dir(old, tighten_tree=True)
    assert mode(old) == 0o700 and mode(old / "logs") == 0o700
    assert mode(old / "queen.db") == 0o600 and mode(old / "logs" / "hive.log") == 0o600
    assert mode(old / "run") == 0o700  # the owner keeps what it had
    assert mode(outside) == 0o644  # a link is not followed out of the tree


def test_logs_are_0600_new_or_old(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "w.log"
    os.close(open_private_log(log))
    assert mode(log) == 0o600 and mode(log.parent) == 0o700
    log.chmod(0o644)
    os.close(open_private_log(log))
    assert mode(log) == 0o600


def test_worker_logs_written_by_the_launcher_are_private(tmp_path: Path) -> None:
    log = tmp_path / "home" / "logs" / "wrk-1.log"
    proc: Any = SubprocessLauncher().launch([sys.executable, "-c", "print('answer')"], {}, (), log)
    proc.wait(10)
    assert log.read_text() == "answer\n"
    assert mode(log) == 0o600 and mode(log.parent) == 0o700


def test_wheelhouse_cache_is_private(tmp_path: Path) -> None:
    cache = tmp_path / "wheelhouse"
    cache.mkdir(mode=0o755)
    (cache / "deps-x").mkdir(mode=0o755)
    (cache / "deps-x" / "a.whl").write_text("wheel")
    builder = WheelhouseBuilder(cache, [], lambda _: None)
    assert builder._ensure_cache() == cache
    assert mode(cache) == 0o700 and mode(cache / "deps-x") == 0o700
    assert mode(cache / "deps-x" / "a.whl") == 0o600


def test_model_cache_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []

    def download(repo: str, filename: str, *, cache_dir: Path, **_: Any) -> str:
        seen.append(mode(Path(cache_dir)))
        return str(Path(cache_dir) / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    ref = parse_ref("hf:org/repo:model.gguf")
    resolve(ref, cache=tmp_path / "models", hf_endpoint=None)
    assert seen == [0o700]
