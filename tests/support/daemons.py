"""Start real rbee daemons as subprocesses on free loopback ports, and clean up after them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rbee_env(root: Path, **extra: str) -> dict[str, str]:
    """Environment for an isolated rbee: own state dir, ports, model cache."""
    port = free_port()
    env = {
        **os.environ,
        "RBEE_QUEEN_STATE_DIR": str(root / "state"),
        "RBEE_QUEEN_PORT": str(port),
        "RBEE_QUEEN_HIVE_PORT": str(free_port()),
        "RBEE_QUEEN_HIVE_HOME": str(root / "hive"),
        "RBEE_QUEEN_TELEMETRY_INTERVAL": "0.5",
        "RBEE_QUEEN_HIVES_CONF": str(root / "hives.conf"),
        "RBEE_QUEEN_URL": f"http://127.0.0.1:{port}",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None
              ) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=0.5).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    url: str
    env: dict[str, str]
    log: Path
    seen_pids: set[int] = field(default_factory=set)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def descendants(self) -> list[psutil.Process]:
        try:
            found = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        self.seen_pids.update(p.pid for p in found)
        return found

    def stop(self, timeout: float = 20.0) -> int:
        self.descendants()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def leftovers(self, grace: float = 5.0) -> list[int]:
        """Pids of anything this daemon ever started that is still alive after `grace`."""
        deadline = time.monotonic() + grace
        alive = [p for p in self.seen_pids if psutil.pid_exists(p) and not _zombie(p)]
        while alive and time.monotonic() < deadline:
            time.sleep(0.05)
            alive = [p for p in alive if psutil.pid_exists(p) and not _zombie(p)]
        return alive


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start_queen(env: dict[str, str], *args: str) -> Daemon:
    state = Path(env["RBEE_QUEEN_STATE_DIR"])
    log = state / "queen-test.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "rbee.queen", *args], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    url = env["RBEE_QUEEN_URL"]
    wait_queen(url, proc)
    return Daemon(proc, url, env, log)


def wait_queen(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Until the queen answers and its local hive, if it runs one, is up. A queen without
    one answers 503 `unavailable` until a hive registers: answering is enough then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"queen exited with {proc.returncode} before it answered")
        try:
            body = httpx.get(f"{url}/health", timeout=0.5).json()
            if body["status"] == "ok" or body["local_hive"] is None:
                return
        except (httpx.TransportError, ValueError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"queen at {url} not healthy within {timeout}s")


def running_queen(env: dict[str, str]) -> Iterator[Daemon]:
    """Fixture body: a queen for the test, then a check that nothing it started survives."""
    daemon = start_queen(env)
    try:
        yield daemon
    finally:
        daemon.stop()
        leftovers = daemon.leftovers()
        assert not leftovers, f"orphan processes after queen stop: {leftovers}"


def start_worker(*args: str, env: dict[str, str] | None = None, log: Path) -> Daemon:
    """A standalone worker on a free port (`args` are worker flags)."""
    port = free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "rbee.worker", "--port", str(port), *args],
                                env=env or dict(os.environ), stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode}; see {log}")
        try:
            if httpx.get(f"{url}/ready", timeout=0.5).status_code == 200:
                return Daemon(proc, url, env or {}, log)
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError("worker not ready")


def run_cli(env: dict[str, str], *args: str, timeout: float = 120.0
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rbee", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def smollm2_path() -> str | None:
    from rbee.models.catalog import builtin_path

    found = builtin_path("smollm2-135m-instruct")
    return str(found) if found else None
