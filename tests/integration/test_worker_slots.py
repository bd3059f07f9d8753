"""A worker that serves several requests at once is sent that many at once by the queen.

Real queen, hive and a fake-engine worker that advertises 4 slots (RBEE_WORKER_SLOTS, which
the hive's workers inherit): 4 streamed requests through the queen must run side by side,
shown by their overlap (every stream has begun before any has ended), not by timings.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.daemons import Daemon, rbee_env, running_queen

pytestmark = pytest.mark.e2e
SLOTS = 4


@pytest.fixture
def queen(tmp_path: Path) -> Iterator[Daemon]:
    # 20 tokens/s, 10 tokens: each answer streams for about half a second.
    env = rbee_env(tmp_path, RBEE_WORKER_SLOTS=str(SLOTS),
                   RBEE_WORKER_FAKE_TOKENS_PER_SECOND="20")
    yield from running_queen(env)


def _stream(url: str) -> tuple[float, float]:
    """When this stream's first and last content frames came."""
    body = {"model": "rbee-fake", "prompt": "overlap", "max_tokens": 10, "stream": True}
    stamps = []
    with httpx.Client(timeout=60) as http, http.stream("POST", f"{url}/v1/completions",
                                                       json=body) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line[6:])
                assert "error" not in chunk, chunk
                if any(c.get("text") for c in chunk["choices"]):
                    stamps.append(time.monotonic())
    assert len(stamps) == 10
    return stamps[0], stamps[-1]


def test_the_queen_runs_as_many_requests_at_once_as_the_worker_advertises(
        queen: Daemon) -> None:
    with httpx.Client(base_url=queen.url, timeout=60) as http:
        warm = http.post("/v1/completions", json={"model": "rbee-fake", "prompt": "hi",
                                                  "max_tokens": 1})
        assert warm.status_code == 200, warm.text
        (worker,) = [w for w in http.get("/v1/workers").json() if w["state"] == "ready"]
        assert worker["slots"] == SLOTS
        with ThreadPoolExecutor(SLOTS) as pool:
            spans = list(pool.map(_stream, [queen.url] * SLOTS))
        # One slot each, side by side: all began before the first one ended. With one
        # slot per worker (the old admission) each waited for the one before it to end.
        assert max(first for first, _ in spans) < min(last for _, last in spans), spans
        assert [w["id"] for w in http.get("/v1/workers").json()] == [worker["id"]]


def test_rbee_worker_spawn_slots_sets_what_a_batching_worker_serves(tmp_path: Path) -> None:
    """`rbee worker spawn --slots N` (engines that batch); refused with one line for an engine
    that serves one at a time, and out of range."""
    from rbee.client import JobFailed, QueenClient
    from tests.support.daemons import run_cli

    for queen in running_queen(rbee_env(tmp_path)):
        done = run_cli(queen.env, "--json", "worker", "spawn", "-m", "rbee-fake", "--slots", "3")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["slots"] == 3
        (worker,) = httpx.get(f"{queen.url}/v1/workers").json()
        assert worker["slots"] == 3
        bad = run_cli(queen.env, "worker", "spawn", "-m", "rbee-fake", "--slots", "0")
        assert bad.returncode != 0 and "Traceback" not in bad.stderr
        client = QueenClient(queen.url)
        with pytest.raises(JobFailed) as refused:  # llama.cpp serves one answer at a time
            client.run("worker_spawn", model="rbee-fake", engine="llama_cpp", slots=2)
        client.close()
        assert "slots" in refused.value.message, refused.value.message
