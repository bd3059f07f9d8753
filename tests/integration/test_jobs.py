"""The job API on real daemons: events, resume, watchers, cancellation, persistence."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from rbee.client import QueenClient
from rbee.client._client import parse_sse
from tests.support.daemons import Daemon, rbee_env, start_queen

pytestmark = pytest.mark.e2e
Clients = Callable[[str], QueenClient]
TERMINAL = {"done", "error", "cancelled"}


def _events(client: QueenClient, job_id: str, after: int = -1) -> list[tuple[int, str, dict]]:
    return [(e.seq, e.event, e.data) for e in client.follow(job_id, after)]


def test_infer_job_streams_tokens_then_one_result_and_one_terminal(
        clients: Clients, shared_queen: Daemon) -> None:
    client = clients(shared_queen.url)
    job = client.submit("infer", model="rbee-fake", prompt="tell me", max_tokens=6, seed=2)
    events = _events(client, job)
    kinds = [k for _, k, _ in events]
    assert [s for s, _, _ in events] == list(range(len(events)))
    assert kinds.count("result") == 1 and sum(k in TERMINAL for k in kinds) == 1
    assert kinds[-1] == "done" and kinds[-2] == "result"
    tokens = [d for _, k, d in events if k == "token"]
    assert [t["i"] for t in tokens] == list(range(6))
    result = events[-2][2]
    assert result["text"] == "".join(t["t"] for t in tokens)
    assert result["usage"]["completion_tokens"] == 6
    assert result["timings"]["ttft_ms"] >= 0
    assert "narration" in kinds
    summary = client.job(job)
    assert summary["state"] == "done" and summary["result"]["text"] == result["text"]
    assert summary["request"]["prompt"] == "tell me"


def test_reconnect_with_last_event_id_resumes_without_loss_or_duplicates(clients: Clients,
        slow_queen: Daemon) -> None:
    client = clients(slow_queen.url)
    job = client.submit("infer", model="rbee-fake", prompt="long", max_tokens=40)
    seen: list[int] = []
    with httpx.Client(base_url=slow_queen.url, timeout=30) as http, \
            http.stream("GET", f"/v1/jobs/{job}/stream") as r:
        for ev in parse_sse(r.iter_lines()):
            seen.append(ev.seq)
            if ev.event == "token" and ev.data["i"] == 3:
                break  # drop the connection mid-generation
    rest = _events(client, job, after=seen[-1])
    assert rest[0][0] == seen[-1] + 1
    all_seqs = seen + [s for s, _, _ in rest]
    assert all_seqs == list(range(len(all_seqs)))
    assert rest[-1][1] == "done"
    tokens = [d["i"] for _, k, d in rest if k == "token"]
    assert tokens[0] == 4 and tokens[-1] == 39
    # A watcher arriving after the end replays everything from history.
    replay = _events(client, job)
    assert [s for s, _, _ in replay] == all_seqs


def test_two_watchers_see_the_same_events(clients: Clients, slow_queen: Daemon) -> None:
    import threading

    client = clients(slow_queen.url)
    job = client.submit("infer", model="rbee-fake", prompt="share", max_tokens=15)
    results: list[list[tuple[int, str, dict]]] = [[], []]

    def watch(slot: int) -> None:
        results[slot] = _events(clients(slow_queen.url), job)

    threads = [threading.Thread(target=watch, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results[0] == results[1] and results[0][-1][1] == "done"


def _worker(http: httpx.Client) -> dict:
    workers = [w for w in http.get("/v1/workers").json() if w["model"] == "rbee-fake"]
    assert len(workers) == 1
    return workers[0]


def _wait_idle(url: str, within: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < within:
        if httpx.get(f"{url}/health").json()["load"] == 0:
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"worker at {url} still generating after {within}s")


def test_delete_cancels_and_frees_the_worker_within_a_second(
        clients: Clients, slow_queen: Daemon) -> None:
    client = clients(slow_queen.url)
    job = client.submit("infer", model="rbee-fake", prompt="forever", max_tokens=5000)
    for ev in client.follow(job):
        if ev.event == "token":
            break
    with httpx.Client(base_url=slow_queen.url) as http:
        worker = _worker(http)
        assert httpx.get(f"{worker['url']}/health").json()["load"] == 1
        summary = http.delete(f"/v1/jobs/{job}").json()
        assert summary["state"] == "cancelled"
        _wait_idle(worker["url"], within=1.0)
    events = _events(client, job)
    assert events[-1][1] == "cancelled"
    assert sum(k in TERMINAL for _, k, _ in events) == 1
    tokens = [d for _, k, d in events if k == "token"]
    assert len(tokens) < 200  # stopped long before 5000 (50 tokens/s)
    # Cancelling again changes nothing and adds no second terminal event.
    assert client.cancel(job)["state"] == "cancelled"
    assert sum(k in TERMINAL for _, k, _ in _events(client, job)) == 1


def test_openai_stream_disconnect_stops_generation(clients: Clients, slow_queen: Daemon) -> None:
    body = {"model": "rbee-fake", "messages": [{"role": "user", "content": "go"}],
            "max_tokens": 5000, "stream": True}
    with httpx.Client(base_url=slow_queen.url, timeout=30) as http:
        with http.stream("POST", "/v1/chat/completions", json=body) as r:
            lines = 0
            for line in r.iter_lines():
                lines += line.startswith("data:")
                if lines == 5:
                    break
        worker = _worker(http)
    _wait_idle(worker["url"], within=1.0)


def test_history_survives_a_queen_restart(clients: Clients, tmp_path: Path) -> None:
    env = rbee_env(tmp_path)
    queen = start_queen(env)
    try:
        client = clients(queen.url)
        done = client.submit("infer", model="rbee-fake", prompt="remember me", max_tokens=3)
        before = _events(client, done)
    finally:
        queen.stop()
    assert not queen.leftovers()
    queen = start_queen(env)
    try:
        client = clients(queen.url)
        assert client.job(done)["state"] == "done"
        assert _events(client, done) == before
        assert _events(client, done, after=1) == before[2:]
        assert done in [j["job_id"] for j in client.jobs(limit=10)]
    finally:
        queen.stop()


def test_a_job_running_when_the_queen_dies_ends_in_error_after_restart(
        clients: Clients, tmp_path: Path) -> None:
    env = rbee_env(tmp_path, RBEE_WORKER_FAKE_TOKENS_PER_SECOND="20")
    queen = start_queen(env)
    try:
        client = clients(queen.url)
        job = client.submit("infer", model="rbee-fake", prompt="interrupted", max_tokens=5000)
        for ev in client.follow(job):
            if ev.event == "token" and ev.data["i"] >= 2:
                break
        time.sleep(0.5)  # let a flush reach the database
        queen.descendants()
        queen.proc.kill()
        queen.proc.wait(10)
        assert not queen.leftovers(), "hive/worker must die with a SIGKILLed queen"
    finally:
        queen.stop()
    queen = start_queen(env)
    try:
        client = clients(queen.url)
        summary = client.job(job)
        assert summary["state"] == "error"
        events = _events(client, job)
        assert events[-1][1] == "error" and events[-1][2]["code"] == "queen_restarted"
        assert sum(k in TERMINAL for _, k, _ in events) == 1
        assert any(k == "token" for _, k, _ in events)
    finally:
        queen.stop()


def test_openai_non_stream_hang_up_stops_generation(clients: Clients, slow_queen: Daemon) -> None:
    body = {"model": "rbee-fake", "messages": [{"role": "user", "content": "go"}],
            "max_tokens": 5000}
    with httpx.Client(base_url=slow_queen.url) as http:
        http.post("/v1/chat/completions", json={**body, "max_tokens": 1})  # place the worker
        with pytest.raises(httpx.ReadTimeout):
            http.post("/v1/chat/completions", json=body, timeout=httpx.Timeout(5, read=0.5))
        worker = _worker(http)
    _wait_idle(worker["url"], within=1.5)


def test_hive_spawned_workers_answer_without_nagle_stalls(clients: Clients,
                                                          shared_queen: Daemon) -> None:
    """Regression: an inherited socket once lost TCP_NODELAY (~40 ms per response).

    Not a benchmark: the bound is loose enough for a noisy machine, the bug was not.
    """
    with httpx.Client(base_url=shared_queen.url) as http:
        http.post("/v1/chat/completions", json={
            "model": "rbee-fake", "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 1})
        worker = _worker(http)
    with httpx.Client(base_url=worker["url"]) as direct:
        direct.get("/health")
        times = []
        for _ in range(15):
            start = time.perf_counter()
            direct.get("/health")
            times.append(time.perf_counter() - start)
    assert sorted(times)[len(times) // 2] < 0.025
