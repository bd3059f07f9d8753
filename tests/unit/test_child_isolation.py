"""Issue 10.3 and 10.4: what the queen and a hive hand their children (argv, environment)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rbee.api.cluster import SpawnWorker
from rbee.core.process import python_module
from rbee.core.states import WorkerState
from rbee.queen.local_hive import LocalHive
from tests.unit.hive.test_supervisor import FakeLauncher, supervisor, wait_state


def local_hive(tmp_path: Path) -> LocalHive:
    return LocalHive(queen_url="http://127.0.0.1:1", port=2, token="ht", worker_token="wt",
                     telemetry_interval=1.0, log_path=tmp_path / "hive.log", home=None,
                     hf_endpoint=None)


def test_children_start_without_the_working_directory_on_sys_path(tmp_path: Path) -> None:
    assert local_hive(tmp_path)._argv[:4] == [sys.executable, "-P", "-m", "rbee.hive"]
    # What -P buys: a module in the cwd is not found (without it, it runs).
    (tmp_path / "rbee_probe.py").write_text("print('imported from the cwd')\n")
    safe = subprocess.run(python_module("rbee_probe"), cwd=tmp_path, capture_output=True,
                          text=True, check=False)
    assert safe.returncode != 0 and "No module named rbee_probe" in safe.stderr
    unsafe = subprocess.run([sys.executable, "-m", "rbee_probe"], cwd=tmp_path,
                            capture_output=True, text=True, check=False)
    assert unsafe.stdout == "imported from the cwd\n"  # the hazard is real without -P


async def test_workers_start_without_the_working_directory_on_sys_path(tmp_path: Path) -> None:
    launcher = FakeLauncher()
    sup = supervisor(tmp_path, launcher)
    sup.spawn(SpawnWorker(model="rbee-fake", worker_id="w1"))
    await wait_state(sup, "w1", WorkerState.READY)
    argv, _ = launcher.launched[0]
    assert argv[:4] == [sys.executable, "-P", "-m", "rbee.worker"]
    await sup.stop_all()


SECRETS = {"RBEE_QUEEN_API_TOKEN": "api", "RBEE_API_TOKEN": "api", "RBEE_QUEEN_HIVE_TOKEN": "q1",
           "RBEE_QUEEN_WORKER_TOKEN": "q2", "RBEE_HIVE_TOKEN": "h1",
           "RBEE_HIVE_WORKER_TOKEN": "h2", "RBEE_WORKER_TOKEN": "old", "HF_TOKEN": "hf"}


def test_the_local_hive_gets_its_own_pair_only(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {**SECRETS, "RBEE_WORKER_FAKE_TOKENS_PER_SECOND": "50"}.items():
        monkeypatch.setenv(key, value)
    env = local_hive(tmp_path)._env
    assert {k: env[k] for k in SECRETS if k in env} == {
        "RBEE_HIVE_TOKEN": "ht", "RBEE_HIVE_WORKER_TOKEN": "wt", "HF_TOKEN": "hf"}
    assert env["RBEE_WORKER_FAKE_TOKENS_PER_SECOND"] == "50"  # not a secret: kept


async def test_workers_get_their_own_token_only(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    launcher = FakeLauncher()
    sup = supervisor(tmp_path, launcher)
    sup.spawn(SpawnWorker(model="rbee-fake", worker_id="w1"))
    await wait_state(sup, "w1", WorkerState.READY)
    _, env = launcher.launched[0]
    assert {k: env[k] for k in SECRETS if k in env} == {"RBEE_WORKER_TOKEN": "wt"}
    await sup.stop_all()
