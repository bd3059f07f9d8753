"""Start the queen in the background when nobody answers, and stop it by its pid file."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from rbee.client import QueenClient
from rbee.core.errors import RbeeError
from rbee.core.process import pid_alive, python_module
from rbee.queen.settings import QueenSettings


class DaemonError(RbeeError):
    pass


def queen_settings() -> QueenSettings:
    """The settings an auto-started queen will read (env RBEE_QUEEN_*), without argv."""
    return QueenSettings()


def pid_file(settings: QueenSettings) -> Path:
    return settings.state_dir / "queen.pid"


def read_pid(settings: QueenSettings) -> int | None:
    try:
        pid = int(pid_file(settings).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def start_queen(settings: QueenSettings, client: QueenClient, timeout: float = 30.0,
                preload: str | None = None) -> int:
    """Spawn `queen-rbee` detached (it outlives this command) and wait for /health."""
    log = settings.state_dir / "logs" / "queen.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = os.environ.copy()
    if preload is not None:
        env["RBEE_QUEEN_PRELOAD_MODEL"] = preload
    with log.open("ab") as out:
        proc = subprocess.Popen(
            python_module("rbee.queen"), stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True, env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.health(timeout=0.5) is not None:
            return proc.pid
        if proc.poll() is not None:
            raise DaemonError(f"queen exited at start (code {proc.returncode}); see {log}")
        time.sleep(0.05)
    raise DaemonError(f"queen did not answer within {timeout:.0f}s; see {log}")


def stop_queen(settings: QueenSettings, timeout: float = 20.0) -> int | None:
    """SIGTERM the queen (it stops its hive, which stops its workers); None if not running."""
    pid = read_pid(settings)
    if pid is None:
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
        _reap(pid)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
    return pid


def _reap(pid: int) -> None:
    """Collect the exit status if the queen is our own child (it is when started here)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
