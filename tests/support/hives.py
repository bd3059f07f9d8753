"""Hive daemons started by hand (no SSH), with the secrets an install would give them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from rbee.client import QueenClient
from rbee.queen.credentials import HiveCredentials
from rbee.storage.db import connect
from rbee.storage.hives import HiveRow, HiveStore
from tests.support.daemons import Daemon, free_port, rbee_env, start_queen, wait_http

INTERVAL = 0.5


@dataclass
class Hive:
    id: str
    proc: subprocess.Popen[bytes]

    def kill_with_workers(self) -> None:
        """What a machine dying looks like: the hive and its workers vanish at once."""
        doomed = [self.proc.pid, *(c.pid for c in psutil.Process(self.proc.pid).children(True))]
        for pid in doomed:
            os.kill(pid, signal.SIGKILL)
        self.proc.wait(5)


def start_hive(hive_id: str, creds: HiveCredentials, env: dict[str, str], root: Path,
               *args: str) -> Hive:
    """`args`: extra rbee-hive flags (e.g. --labels gpu=h100 --region eu-west)."""
    port = free_port()
    with (root / f"{hive_id}.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rbee.hive", "--hive-id", hive_id, "--port", str(port),
             "--queen-url", env["RBEE_QUEEN_URL"], "--telemetry-interval", str(INTERVAL),
             "--home", str(root / hive_id), *args],
            env={**env, "RBEE_HIVE_TOKEN": creds.token,
                 "RBEE_HIVE_WORKER_TOKEN": creds.worker_token},
            stdout=log, stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{port}/health", proc=proc)
    return Hive(hive_id, proc)


@dataclass
class Cluster:
    queen: Daemon
    hives: dict[str, Hive]
    client: QueenClient


@contextlib.contextmanager
def running_cluster(root: Path, hives: dict[str, tuple[str, ...]], **env_extra: str
                    ) -> Iterator[Cluster]:
    """A queen without a local hive plus `hives` (id → extra rbee-hive flags), each holding
    the secrets an install would have given it; waits until all are up."""
    env = rbee_env(root, RBEE_QUEEN_LOCAL_HIVE="false",
                   RBEE_WORKER_FAKE_TOKENS_PER_SECOND="40", **env_extra)
    creds = {h: HiveCredentials.new() for h in hives}
    db = connect(Path(env["RBEE_QUEEN_STATE_DIR"]) / "queen.db")
    for hive_id, c in creds.items():  # as `rbee hive install` leaves them
        HiveStore(db).save(HiveRow(hive_id, c.token, c.worker_token, {}), time.time())
    db.close()
    started: dict[str, Hive] = {}
    queen = start_queen(env)
    cluster = Cluster(queen, started, QueenClient(queen.url, env.get("RBEE_API_TOKEN")))
    try:
        for h, c in creds.items():
            started[h] = start_hive(h, c, env, root, *hives[h])
        deadline = time.monotonic() + 10
        while {x["id"]: x["state"] for x in cluster.client.run("hive_list")["hives"]
               } != dict.fromkeys(hives, "up"):
            assert time.monotonic() < deadline, "hives did not register"
            time.sleep(0.05)
        yield cluster
    finally:
        cluster.client.close()
        for hive in started.values():
            if hive.proc.poll() is None:
                hive.proc.terminate()
                hive.proc.wait(20)
        cluster.queen.stop()  # the test may have restarted it
