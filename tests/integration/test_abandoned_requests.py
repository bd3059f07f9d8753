"""Clients that give up while queued leave the queue: no 429 for the live ones behind them,
and no work for requests nobody waits for (issue 10, point 7). Real queen, fake worker."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.daemons import Daemon, rbee_env, running_queen
from tests.support.invariants import Timed, assert_invariants

pytestmark = pytest.mark.e2e


@pytest.fixture
def queen(tmp_path: Path) -> Iterator[Daemon]:
    env = rbee_env(tmp_path, RBEE_WORKER_FAKE_TOKENS_PER_SECOND="20",
                   RBEE_QUEEN_MAX_QUEUE="3")
    yield from running_queen(env)


def _chat(max_tokens: int) -> dict[str, object]:
    return {"model": "rbee-fake", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": max_tokens}


def _queued(http: httpx.Client) -> int:
    queues = http.get("/v1/scheduler").json()["queues"]
    return int(queues.get("rbee-fake", {}).get("queued", 0))


def test_clients_that_give_up_leave_the_queue(queen: Daemon) -> None:
    timed = Timed()
    with httpx.Client(base_url=queen.url, timeout=60) as http:
        assert http.post("/v1/chat/completions", json=_chat(1)).status_code == 200  # warm
        busy = threading.Thread(  # holds the only worker for 5 s (100 tokens at 20/s)
            target=lambda: httpx.post(f"{queen.url}/v1/chat/completions", json=_chat(100),
                                      timeout=60))
        busy.start()
        time.sleep(0.3)

        def give_up() -> None:  # queued behind it with 100 tokens (5 s), then hangs up
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(f"{queen.url}/v1/chat/completions", json=_chat(100), timeout=0.5)

        quitters = [threading.Thread(target=give_up) for _ in range(3)]
        for t in quitters:
            t.start()
        for t in quitters:
            t.join()
        deadline = time.monotonic() + 0.5  # the busy request still runs for seconds
        while _queued(http) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _queued(http) == 0  # their places are free at once
        answers: list[int] = []

        def live() -> None:
            t0 = time.monotonic()
            answers.append(httpx.post(f"{queen.url}/v1/chat/completions", json=_chat(2),
                                      timeout=60).status_code)
            # Behind the busy request only (< 5 s), not behind 3 × 5 s of abandoned work.
            timed.record("a live request after three abandoned ones", t0, 8.0)

        lives = [threading.Thread(target=live) for _ in range(3)]
        for t in lives:
            t.start()
        for t in lives:
            t.join()
        busy.join()
        assert answers == [200, 200, 200]  # none refused with 429
    assert_invariants(queen.url, timed)
