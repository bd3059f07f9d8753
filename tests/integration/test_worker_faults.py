"""Workers that hang or die under real requests: every request ends within its deadline.

Real queen, hive and fake-engine workers; SIGSTOP stands in for a hung machine (it keeps its
connections open and says nothing), SIGKILL for a crash. Liveness is tuned to a second so the
tests are quick; the invariant checker runs after each scenario.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.daemons import Daemon, rbee_env, running_queen
from tests.support.invariants import Timed, assert_invariants

pytestmark = pytest.mark.e2e

LIVENESS = 1.0
SPAWN = 20.0  # a new fake worker, on a loaded 2-core machine


@pytest.fixture
def queen(tmp_path: Path) -> Iterator[Daemon]:
    env = rbee_env(tmp_path, RBEE_WORKER_FAKE_TOKENS_PER_SECOND="20",
                   RBEE_QUEEN_LIVENESS_INTERVAL="0.2",
                   RBEE_QUEEN_LIVENESS_TIMEOUT=str(LIVENESS),
                   RBEE_QUEEN_WORKER_IDLE_TIMEOUT="30")
    yield from running_queen(env)


def _chat(stream: bool, max_tokens: int = 200) -> dict[str, object]:
    return {"model": "rbee-fake", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": max_tokens, "stream": stream}


def _workers(http: httpx.Client) -> list[dict[str, object]]:
    listed: list[dict[str, object]] = http.get("/v1/workers").json()
    return listed


def _only_worker(http: httpx.Client) -> dict[str, object]:
    ready = [w for w in _workers(http) if w["state"] == "ready"]
    assert len(ready) == 1, ready
    return ready[0]


def _frames(lines: Iterator[str]) -> Iterator[dict[str, object] | str]:
    for line in lines:
        if line.startswith("data: "):
            data = line[6:]
            yield data if data == "[DONE]" else json.loads(data)


def _warm(http: httpx.Client) -> dict[str, object]:
    r = http.post("/v1/chat/completions", json=_chat(False, 2))
    assert r.status_code == 200, r.text
    return _only_worker(http)


def _state_of(http: httpx.Client, worker_id: object) -> object:
    return next(w["state"] for w in _workers(http) if w["id"] == worker_id)


def test_a_worker_stopped_mid_stream_ends_the_stream_and_is_routed_around(
        queen: Daemon) -> None:
    timed = Timed()
    with httpx.Client(base_url=queen.url, timeout=60) as http:
        worker = _warm(http)
        started = time.monotonic()
        content, tail = 0, []
        with http.stream("POST", "/v1/chat/completions", json=_chat(True)) as r:
            assert r.status_code == 200
            for frame in _frames(r.iter_lines()):
                if isinstance(frame, dict) and "choices" in frame:
                    content += 1
                    if content == 3:
                        os.kill(int(worker["pid"]), signal.SIGSTOP)  # type: ignore[call-overload]
                        stopped = time.monotonic()
                else:
                    tail.append(frame)
        try:
            timed.record("stream cut after SIGSTOP", stopped, LIVENESS + 3.0)
            assert isinstance(tail[0], dict) and "error" in tail[0], tail
            assert tail[-1] == "[DONE]"
            assert _state_of(http, worker["id"]) == "unknown"
            # The next request is not routed to the stopped worker: a new one serves it.
            t0 = time.monotonic()
            r = http.post("/v1/chat/completions", json=_chat(False, 2))
            timed.record("request after the stop", t0, SPAWN)
            assert r.status_code == 200, r.text
            assert len([w for w in _workers(http) if w["state"] == "ready"]) == 1
        finally:
            os.kill(int(worker["pid"]), signal.SIGCONT)  # type: ignore[call-overload]
        # Back: it answers probes again and is routed to again.
        deadline = time.monotonic() + 5
        while _state_of(http, worker["id"]) != "ready" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _state_of(http, worker["id"]) == "ready"
    assert time.monotonic() - started < 60
    assert_invariants(queen.url, timed)


def test_a_request_to_a_hung_idle_worker_fails_over(queen: Daemon) -> None:
    timed = Timed()
    with httpx.Client(base_url=queen.url, timeout=60) as http:
        worker = _warm(http)
        os.kill(int(worker["pid"]), signal.SIGSTOP)  # type: ignore[call-overload]
        try:
            for stream in (False, True):  # the hive still reports it ready
                t0 = time.monotonic()
                r = http.post("/v1/chat/completions", json=_chat(stream, 3))
                timed.record(f"stream={stream} request to a hung worker", t0,
                             LIVENESS + SPAWN)
                assert r.status_code == 200, r.text
                assert "error" not in r.text
        finally:
            os.kill(int(worker["pid"]), signal.SIGCONT)  # type: ignore[call-overload]
    assert_invariants(queen.url, timed)


def test_a_worker_killed_mid_stream_ends_the_stream_at_once(queen: Daemon) -> None:
    timed = Timed()
    with httpx.Client(base_url=queen.url, timeout=60) as http:
        worker = _warm(http)
        tail: list[object] = []
        with http.stream("POST", "/v1/chat/completions", json=_chat(True)) as r:
            for frame in _frames(r.iter_lines()):
                if isinstance(frame, dict) and "choices" in frame and not tail:
                    if worker.get("killed") is None:
                        os.kill(int(worker["pid"]), signal.SIGKILL)  # type: ignore[call-overload]
                        worker["killed"] = time.monotonic()
                else:
                    tail.append(frame)
        timed.record("stream cut after SIGKILL", float(worker["killed"]), 2.0)  # type: ignore[arg-type]
        assert isinstance(tail[0], dict) and "error" in tail[0], tail
        assert tail[-1] == "[DONE]"
        t0 = time.monotonic()
        r = http.post("/v1/chat/completions", json=_chat(False, 2))
        timed.record("request after the crash", t0, SPAWN)
        assert r.status_code == 200, r.text
    assert_invariants(queen.url, timed)


def test_the_clients_deadline_ends_a_request(queen: Daemon) -> None:
    timed = Timed()
    with httpx.Client(base_url=queen.url, timeout=60) as http:
        _warm(http)
        for stream in (False, True):
            t0 = time.monotonic()
            r = http.post("/v1/chat/completions", json=_chat(stream, 400),
                          headers={"X-Request-Timeout": "1"})  # 400 tokens take 20 s
            timed.record(f"stream={stream} with a 1 s deadline", t0, 3.0)
            if stream:
                assert r.status_code == 200
                assert '"code":"deadline_exceeded"' in r.text.replace(" ", "")
                assert r.text.rstrip().endswith("data: [DONE]")
            else:
                assert r.status_code == 504, r.text
                assert r.json()["error"]["code"] == "deadline_exceeded"
    assert_invariants(queen.url, timed)
