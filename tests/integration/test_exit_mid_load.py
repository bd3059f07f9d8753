"""A real hive SIGTERMed mid-download, and a real worker SIGTERMed mid-load, exit at once.

Neither a download nor a model load can be cancelled; before, the process waited for it at
exit (the loop's executor is joined), living on as an orphan that holds its memory.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.daemons import free_port, rbee_env, wait_http

pytestmark = pytest.mark.e2e
EXIT_WITHIN = 5.0  # seconds: an interpreter's shutdown, not a download's or a load's end


def exit_time(proc: subprocess.Popen[bytes], sig: int) -> float:
    """Seconds from `sig` to exit (killing it after 30 s: then the test fails)."""
    started = time.monotonic()
    proc.send_signal(sig)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    return time.monotonic() - started


@pytest.fixture
def black_hole() -> Iterator[socket.socket]:
    """A 'hub' that accepts connections and never answers: a download that hangs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.settimeout(30)
        yield sock


# SIGTERM: what the queen sends (and PDEATHSIG, when the queen dies); SIGINT: Ctrl-C on a
# hive or worker started by hand (uvicorn turns it into KeyboardInterrupt after shutdown).
SIGNALS = pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])


@SIGNALS
def test_a_hive_signalled_mid_download_exits_at_once(tmp_path: Path, black_hole: socket.socket,
                                                     sig: int) -> None:
    port = free_port()
    hub = f"http://127.0.0.1:{black_hole.getsockname()[1]}"
    # The hub client would give up after 10 s on its own: long enough here to tell apart.
    env = rbee_env(tmp_path, HF_HUB_ETAG_TIMEOUT="120", HF_HUB_DOWNLOAD_TIMEOUT="120")
    env.pop("HF_HUB_OFFLINE", None)
    log = tmp_path / "hive.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rbee.hive", "--hive-id", "h", "--port", str(port),
             "--home", str(tmp_path / "home"), "--hf-endpoint", hub],
            env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc=proc)
        r = httpx.post(f"http://127.0.0.1:{port}/v1/workers",
                       json={"model": "hf:org/repo:model.gguf", "device": "cpu"}, timeout=10)
        assert r.status_code == 202, r.text
        conn, _ = black_hole.accept()  # the download is under way, and will hang
        with conn:
            took = exit_time(proc, sig)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert took < EXIT_WITHIN, f"hive took {took:.1f}s to exit:\n{log.read_text()[-2000:]}"


@SIGNALS
def test_a_worker_signalled_mid_load_exits_at_once(tmp_path: Path, sig: int) -> None:
    port = free_port()
    log = tmp_path / "worker.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rbee.worker", "--model", "rbee-fake", "--engine", "fake",
             "--port", str(port), "--fake-load-seconds", "120"],
            env=rbee_env(tmp_path), stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc=proc)
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
        assert "loading" in health.text  # still loading: the SIGTERM lands mid-load
        took = exit_time(proc, sig)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert took < EXIT_WITHIN, f"worker took {took:.1f}s to exit:\n{log.read_text()[-2000:]}"


def test_a_worker_whose_parent_died_mid_load_exits_at_once(tmp_path: Path) -> None:
    """The backstop where no PDEATHSIG fires (not Linux, or a parent that did not ask for
    it): the worker sees its parent gone and shuts down by itself, loading or not."""
    port = free_port()
    argv = [sys.executable, "-m", "rbee.worker", "--model", "rbee-fake", "--engine", "fake",
            "--port", str(port), "--fake-load-seconds", "120"]
    spawn = ("import os, subprocess, sys, time\n"
             "p = subprocess.Popen(sys.argv[1:] + ['--parent-pid', str(os.getpid())])\n"
             "print(p.pid, flush=True)\n"
             "time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", spawn, *argv], env=rbee_env(tmp_path),
                              stdout=subprocess.PIPE)
    assert parent.stdout is not None
    worker = psutil.Process(int(parent.stdout.readline()))
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        assert "loading" in httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).text
        started = time.monotonic()
        parent.kill()  # as a SIGKILLed hive: nothing of it runs any more
        parent.wait(5)
        while gone(worker) is False and time.monotonic() - started < 30:
            time.sleep(0.05)
        took = time.monotonic() - started
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(5)
        parent.stdout.close()
        if not gone(worker):
            worker.kill()
    assert took < EXIT_WITHIN, f"the orphaned worker took {took:.1f}s to exit"


def gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
