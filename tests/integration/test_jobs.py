"""The job API on real daemons: events, resume, watchers, cancellation, persistence."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from rbee.client import QueenClient
from rbee.client._client import StreamEvent, job_events
from tests.support.daemons import Daemon, rbee_env, run_cli, start_queen
from tests.support.invariants import Timed, assert_invariants

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
        for ev in job_events(r):
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


def test_a_client_resuming_after_a_queen_crash_gets_the_end_from_any_id_it_saw(
        clients: Clients, tmp_path: Path) -> None:
    """SIGKILL while a client is reading: the events it saw last were not flushed yet (every
    200 ms). After a restart, no id it saw may mean another event, and resuming after any of
    them must end with the `queen_restarted` error."""
    env = rbee_env(tmp_path, RBEE_WORKER_FAKE_TOKENS_PER_SECOND="200")
    queen = start_queen(env)
    seen: list[StreamEvent] = []
    try:
        client = clients(queen.url)
        job = client.submit("infer", model="rbee-fake", prompt="crash", max_tokens=5000)
        with httpx.Client(base_url=queen.url, timeout=30) as http, \
                http.stream("GET", f"/v1/jobs/{job}/stream") as r:
            for ev in job_events(r):
                seen.append(ev)
                if ev.event == "token" and ev.data["i"] >= 40:  # several flushes behind us
                    queen.descendants()
                    queen.proc.kill()  # at once: the last events are only in its memory
                    break
        queen.proc.wait(10)
        assert not queen.leftovers()
    finally:
        queen.stop()
    queen = start_queen(env)
    try:
        client = clients(queen.url)
        replay = {e.seq: e for e in client.follow(job)}
        end = max(replay)
        assert replay[end].event == "error" and replay[end].data["code"] == "queen_restarted"
        assert end > seen[-1].seq
        for ev in seen:  # an id the client saw is that event, or was lost: never another
            assert replay.get(ev.seq, ev) == ev
        for ev in seen:
            rest = list(client.follow(job, after=ev.seq))
            assert rest and rest[-1] == replay[end], f"resume after {ev.seq}"
            assert all(r.seq > ev.seq for r in rest)
        assert_invariants(queen.url, Timed())  # the job ended exactly once; nothing leaked
    finally:
        queen.stop()
    assert not queen.leftovers()


def _damage_pages(state: Path) -> None:
    from tests.unit.storage.test_db import damage_pages

    damage_pages(state / "queen.db")


@pytest.mark.parametrize("spoil", ["garbage", "empty", "pages"])
def test_a_damaged_database_stops_the_queen_with_one_line_and_reset_db_recovers(
        clients: Clients, tmp_path: Path, spoil: str) -> None:
    env = rbee_env(tmp_path)
    state = Path(env["RBEE_QUEEN_STATE_DIR"])
    state.mkdir(parents=True)
    db = state / "queen.db"
    if spoil == "garbage":
        db.write_bytes(b"not a database\n" * 1000)
    elif spoil == "empty":
        db.write_bytes(b"")
    else:
        _damage_pages(state)
    before = db.read_bytes()
    failed = subprocess.run([sys.executable, "-m", "rbee.queen"], env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    assert failed.returncode != 0
    assert failed.stdout == "" and len(failed.stderr.strip().splitlines()) == 1, failed.stderr
    assert failed.stderr.startswith(f"queen-rbee: {db} is damaged (")
    assert failed.stderr.rstrip().endswith("move it aside with: rbee queen reset-db")
    assert db.read_bytes() == before
    reset = run_cli(env, "--json", "queen", "reset-db")
    assert reset.returncode == 0, reset.stderr
    moved = [p for p in state.iterdir() if p.name.startswith("queen.db.aside-")]
    assert len(moved) == 1 and moved[0].read_bytes() == before
    assert json.loads(reset.stdout) == {"database": str(db), "moved_to": str(moved[0])}
    queen = start_queen(env)
    try:
        assert clients(queen.url).jobs() == []
    finally:
        queen.stop()


def test_reset_db_refuses_while_the_queen_runs(queen: Daemon) -> None:
    reset = run_cli(queen.env, "queen", "reset-db")
    assert reset.returncode != 0
    assert f"the queen is running (pid {queen.pid})" in reset.stderr
    assert (Path(queen.env["RBEE_QUEEN_STATE_DIR"]) / "queen.db").exists()


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
