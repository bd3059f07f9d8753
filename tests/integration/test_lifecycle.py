"""Hive supervision and shutdown on real processes: crashes noticed, no orphans, auth."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from rbee.client import QueenClient
from rbee.core.errors import RbeeError
from tests.support.daemons import Daemon, rbee_env, run_cli, start_queen
from tests.support.invariants import Timed, assert_invariants

pytestmark = pytest.mark.e2e


def _spawn_fake(client: QueenClient) -> dict:
    worker: dict = client.run("worker_spawn", model="rbee-fake")["worker"]
    return worker


def _wait(predicate: object, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {within}s")


def test_crashed_worker_is_noticed_and_reported(queen: Daemon) -> None:
    with QueenClient(queen.url) as client:
        worker = _spawn_fake(client)
        os.kill(worker["pid"], signal.SIGKILL)

        def crashed() -> bool:
            found = [w for w in client.run("worker_list")["workers"] if w["id"] == worker["id"]]
            return bool(found) and found[0]["state"] == "crashed"

        _wait(crashed, 3.0, "crash report")
        listed = [w for w in client.run("worker_list")["workers"] if w["id"] == worker["id"]]
        assert "exited" in listed[0]["error"]
        # The next request for the model is served by a new worker, not the dead one.
        result = client.run("infer", model="rbee-fake", prompt="again", max_tokens=2)
        assert result["worker_id"] != worker["id"]


def test_worker_stop_frees_the_process(queen: Daemon) -> None:
    with QueenClient(queen.url) as client:
        worker = _spawn_fake(client)
        assert psutil.pid_exists(worker["pid"])
        stopped = client.run("worker_stop", worker_id=worker["id"])["worker"]
        assert stopped["state"] == "stopped"
        _wait(lambda: not psutil.pid_exists(worker["pid"]), 5.0, "worker exit")
        assert worker["id"] not in [w["id"] for w in client.run("worker_list")["workers"]]


def test_killing_the_hive_takes_its_workers_with_it(queen: Daemon) -> None:
    with QueenClient(queen.url) as client:
        worker = _spawn_fake(client)
    hive = next(p for p in psutil.Process(queen.pid).children() if "rbee.hive" in " ".join(
        p.cmdline()))
    hive.kill()
    _wait(lambda: not psutil.pid_exists(worker["pid"]), 5.0, "orphan worker exit")


def test_cli_queen_stop_stops_everything_it_started(env: dict[str, str]) -> None:
    started = run_cli(env, "queen", "start")
    assert started.returncode == 0, started.stderr
    with QueenClient(env["RBEE_QUEEN_URL"]) as client:
        worker = _spawn_fake(client)
    pid = int((Path(env["RBEE_QUEEN_STATE_DIR"]) / "queen.pid").read_text())
    family = [pid, *(p.pid for p in psutil.Process(pid).children(recursive=True))]
    assert worker["pid"] in family and len(family) >= 3
    stopped = run_cli(env, "queen", "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stderr
    _wait(lambda: not any(psutil.pid_exists(p) for p in family), 5.0, "cascading shutdown")
    again = run_cli(env, "--json", "queen", "status")
    assert again.returncode == 3 and '"running": false' in again.stdout


def test_non_loopback_bind_without_token_refuses_to_start(env: dict[str, str]) -> None:
    for module in ("rbee.queen", "rbee.hive"):
        r = subprocess.run([sys.executable, "-m", module, "--host", "0.0.0.0", "--port", "0"],
                           env=env, capture_output=True, text=True, timeout=30, check=False)
        assert r.returncode != 0
        assert "refusing to listen on 0.0.0.0 without a token" in r.stderr


def test_open_hive_needs_a_worker_token_and_workers_check_their_socket(
        env: dict[str, str]) -> None:
    # A hive with its own token but none for its workers would expose them: refused.
    r = subprocess.run([sys.executable, "-m", "rbee.hive", "--host", "0.0.0.0", "--port", "0"],
                       env={**env, "RBEE_HIVE_TOKEN": "t"}, capture_output=True, text=True,
                       timeout=30, check=False)
    assert r.returncode != 0 and "RBEE_HIVE_WORKER_TOKEN" in r.stderr
    # A worker judges the socket it was handed, not its --host default (127.0.0.1).
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        sock.set_inheritable(True)
        r = subprocess.run([sys.executable, "-m", "rbee.worker", "--fd", str(sock.fileno()),
                            "--model", "rbee-fake", "--engine", "fake"],
                           env=env, capture_output=True, text=True, timeout=30, check=False,
                           pass_fds=(sock.fileno(),))
    assert r.returncode != 0 and "rbee-worker: refusing to listen on 0.0.0.0" in r.stderr


def test_api_token_is_required_when_set(tmp_path: Path) -> None:
    env = rbee_env(tmp_path, RBEE_QUEEN_API_TOKEN="s3cret-token")
    queen = start_queen(env)
    try:
        with httpx.Client(base_url=queen.url) as http:
            assert http.get("/health").status_code == 200
            bad = ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"})
            for headers in bad:
                r = http.get("/v1/models", headers=headers)
                assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
            ok = http.get("/v1/models", headers={"Authorization": "Bearer s3cret-token"})
            assert ok.status_code == 200
        cli = run_cli({**env, "RBEE_API_TOKEN": "s3cret-token"}, "--json", "model", "list")
        assert cli.returncode == 0, cli.stderr
        denied = run_cli(env, "model", "list")
        assert denied.returncode == 1 and "RBEE_API_TOKEN" in denied.stderr
        assert "s3cret-token" not in queen.log.read_text()
    finally:
        queen.stop()
    assert not queen.leftovers()


def test_internal_calls_need_the_cluster_tokens(queen: Daemon) -> None:
    with QueenClient(queen.url) as client:
        worker = _spawn_fake(client)
    body = {"model": "rbee-fake", "messages": [{"role": "user", "content": "x"}]}
    r = httpx.post(f"{worker['url']}/v1/chat/completions", json=body)
    assert r.status_code == 401
    hive_port = queen.env["RBEE_QUEEN_HIVE_PORT"]
    assert httpx.get(f"http://127.0.0.1:{hive_port}/v1/workers").status_code == 401
    assert httpx.get(f"http://127.0.0.1:{hive_port}/health").status_code == 200


def test_cli_errors_are_one_line_and_nonzero(env: dict[str, str]) -> None:
    r = run_cli(env, "--no-autostart", "infer", "hi")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no queen answers" in r.stderr
    r = run_cli(env, "jobs", "show", "job-nope")
    assert r.returncode == 1 and "rbee queen start" in r.stderr and r.stderr.count("\n") == 1
    assert run_cli(env, "queen", "start").returncode == 0
    r = run_cli(env, "jobs", "show", "job-nope")
    assert r.returncode == 1 and "no job" in r.stderr
    r = run_cli(env, "infer", "hi", "--temperature", "9")
    assert r.returncode == 2
    run_cli(env, "queen", "stop")


def _local_hive(queen: Daemon) -> psutil.Process:
    return next(p for p in psutil.Process(queen.pid).children()
                if "rbee.hive" in " ".join(p.cmdline()))


def _health(queen: Daemon) -> tuple[int, dict]:
    r = httpx.get(f"{queen.url}/health", timeout=2)
    return r.status_code, r.json()


def test_a_killed_local_hive_is_restarted_and_health_tells_the_truth(queen: Daemon) -> None:
    with QueenClient(queen.url) as client:
        worker = _spawn_fake(client)
        assert _health(queen)[0] == 200 and _health(queen)[1]["status"] == "ok"
        hive = _local_hive(queen)
        hive.kill()
        # The queen notices at once (it reaps its child): not ok, and says why.
        seen: list[tuple[int, dict]] = []
        _wait(lambda: seen.append(_health(queen)) or seen[-1][0] == 503, 3.0, "health 503")
        body = seen[-1][1]
        assert body["status"] == "unavailable" and "localhost" not in body["hives_up"]
        assert body["local_hive"]["up"] is False
        # Meanwhile its dead worker is no longer listed as ready (or gone: hive back already).
        listed = {w["id"]: w["state"] for w in client.run("worker_list")["workers"]}
        assert listed.get(worker["id"]) in (None, "unknown")
        # Restarted: ok again, a new hive process, the old one reaped (no zombie).
        _wait(lambda: seen.append(_health(queen)) or seen[-1][1]["status"] == "ok", 20.0,
              "local hive restart")
        assert seen[-1][0] == 200 and seen[-1][1]["local_hive"]["restarts"] == 1
        assert _local_hive(queen).pid != hive.pid and not psutil.pid_exists(hive.pid)
        result = client.run("infer", model="rbee-fake", prompt="after", max_tokens=2)
        assert result["worker_id"] != worker["id"]
    assert f"local hive (pid {hive.pid}) killed by SIGKILL" in queen.log.read_text()
    status = run_cli(queen.env, "queen", "status")
    assert status.returncode == 0 and f"at {queen.url}: ok" in status.stdout
    assert_invariants(queen.url, Timed())  # every job of the test ended exactly once


def test_a_worker_that_fails_to_load_is_ended(queen: Daemon, tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"this is not a gguf file")
    with QueenClient(queen.url) as client:
        with pytest.raises(RbeeError):
            client.run("worker_spawn", model=f"file:{broken}")
        failed = [w for w in client.run("worker_list")["workers"] if w["model"] == f"file:{broken}"]
        assert failed and failed[0]["state"] == "crashed" and failed[0]["pid"]
        pid = failed[0]["pid"]
        # The hive ends the failed worker itself (before, it stayed resident for good).
        _wait(lambda: not psutil.pid_exists(pid), 6.0, "failed worker exit")
        stopped = client.run("worker_stop", worker_id=failed[0]["id"])["worker"]
        assert stopped["id"] == failed[0]["id"] and not psutil.pid_exists(pid)
