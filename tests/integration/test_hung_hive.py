"""A real local hive that hangs (SIGSTOP: its process lives, nothing of it runs) is found
out by its silence, killed and restarted by the queen; its workers go with it."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from rbee.client import QueenClient
from tests.support.daemons import Daemon, rbee_env, running_queen

pytestmark = pytest.mark.e2e


@pytest.fixture
def queen(tmp_path: Path) -> Iterator[Daemon]:
    yield from running_queen(rbee_env(tmp_path))


def local_hive(queen: Daemon) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{queen.url}/health", timeout=5).json()["local_hive"]
    return body


def test_a_hung_local_hive_is_killed_and_restarted(queen: Daemon) -> None:
    with QueenClient(queen.url) as client:
        worker = client.run("worker_spawn", model="rbee-fake")["worker"]
    hive = next(p for p in queen.descendants() if "rbee.hive" in " ".join(p.cmdline()))
    assert worker["pid"] in [p.pid for p in hive.children()]
    os.kill(hive.pid, signal.SIGSTOP)  # as a hive whose loop a wedged driver holds
    stopped_at = time.monotonic()
    deadline = stopped_at + 90
    while time.monotonic() < deadline:
        state = local_hive(queen)
        if state["restarts"] >= 1 and state["up"]:
            break
        time.sleep(0.5)
    took = time.monotonic() - stopped_at
    assert state["restarts"] == 1 and state["up"], state
    assert state["last_exit"].startswith("hung (no telemetry for 3"), state  # 30 s and more
    assert 30 <= took < 60
    assert not psutil.pid_exists(hive.pid) or hive.status() == psutil.STATUS_ZOMBIE
    # Its worker did not outlive it: PDEATHSIG's SIGTERM, then the worker's own graceful
    # stop (about a second; longer on a busy machine).
    assert gone_within(worker["pid"], 15), psutil.Process(worker["pid"]).status()
    assert "(hung?); killing it (SIGKILL)" in queen.log.read_text()


def gone_within(pid: int, seconds: float) -> bool:
    """The process ended (or is a zombie nobody reaped yet) within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False
