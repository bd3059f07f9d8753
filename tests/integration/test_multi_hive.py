"""One queen, two real hive daemons on this machine (no SSH): what happens when a hive dies.

The hives get their secrets the way installed hives do (the queen's `hives` table), so the
queen treats them exactly as remote hives. The SSH side is in tests/e2e/test_multi_host.py.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rbee.client import JobFailed, QueenClient
from tests.support.hives import INTERVAL, Cluster, running_cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path, {"h1": (), "h2": ()}) as c:
        yield c


def wait_until(check: object, timeout: float) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def states(client: QueenClient) -> dict[str, str]:
    return {h["id"]: h["state"] for h in client.run("hive_list")["hives"]}


def spawn(client: QueenClient, hive_id: str) -> str:
    worker: dict[str, str] = client.run("worker_spawn", model="rbee-fake", hive_id=hive_id)[
        "worker"]
    return worker["id"]


def test_a_dead_hives_model_is_re_placed_on_a_live_hive(cluster: Cluster) -> None:
    spawn(cluster.client, "h1")
    cluster.hives["h1"].kill_with_workers()
    wait_until(lambda: states(cluster.client)["h1"] == "down", 3 * INTERVAL + 1)

    def replaced() -> bool:
        workers = cluster.client.run("worker_list", hive_id="h2")["workers"]
        return any(w["model"] == "rbee-fake" and w["state"] == "ready" for w in workers)

    wait_until(replaced, 30)  # nobody asked: the queen did it on its own
    result = cluster.client.run("infer", model="rbee-fake", prompt="hi", max_tokens=2)
    assert result["worker_id"] in {w["id"] for w in
                                   cluster.client.run("worker_list", hive_id="h2")["workers"]}


def test_a_request_not_yet_streaming_is_retried_on_another_worker(cluster: Cluster) -> None:
    first = {spawn(cluster.client, "h1"): "h1", spawn(cluster.client, "h2"): "h2"}
    preferred = min(first)  # equal load: the router breaks the tie by worker id
    survivor = max(first)
    cluster.hives[first[preferred]].kill_with_workers()
    # Before the hive is even marked down, the OpenAI API answers from the other worker...
    r = httpx.post(f"{cluster.queen.url}/v1/chat/completions", timeout=30, json={
        "model": "rbee-fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    assert r.status_code == 200, r.text
    # ...and so does the job API, which says it retried.
    job = cluster.client.submit("infer", model="rbee-fake", prompt="hi", max_tokens=2)
    events = list(cluster.client.run_events(job))
    result = next(e.data for e in events if e.event == "result")
    assert result["worker_id"] == survivor


def test_a_stream_under_way_ends_with_a_clean_error_frame(cluster: Cluster) -> None:
    spawn(cluster.client, "h1")
    body = {"model": "rbee-fake", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 400, "stream": True}
    frames: list[str] = []
    with httpx.stream("POST", f"{cluster.queen.url}/v1/chat/completions", json=body,
                      timeout=30) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            frames.append(line[6:])
            if len(frames) == 3:
                cluster.hives["h1"].kill_with_workers()
    assert frames[-1] == "[DONE]"
    error = json.loads(frames[-2])["error"]
    assert error["code"] == "worker_unavailable" and "mid-stream" in error["message"]
    assert all("choices" in json.loads(f) for f in frames[:3])


def test_a_hive_that_comes_back_is_re_adopted_with_its_workers(cluster: Cluster) -> None:
    """A partition, not a death: the hive stops reporting while its worker lives on."""
    worker = spawn(cluster.client, "h1")
    hive = cluster.hives["h1"].proc
    hive.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: states(cluster.client)["h1"] == "down", 3 * INTERVAL + 1)
        assert cluster.client.run("infer", model="rbee-fake", prompt="hi", max_tokens=2)[
            "worker_id"] != worker  # served elsewhere (re-placed) while h1 is away
    finally:
        hive.send_signal(signal.SIGCONT)
    wait_until(lambda: states(cluster.client)["h1"] == "up", 3 * INTERVAL + 1)
    listed = cluster.client.run("worker_list", hive_id="h1")["workers"]
    assert [w["id"] for w in listed] == [worker] and listed[0]["state"] == "ready"
    result = cluster.client.run("infer", model="rbee-fake", prompt="hi", max_tokens=2,
                                hive_id="h1")
    assert result["worker_id"] == worker  # re-adopted: routable again, no second worker there


def test_hive_views_and_hostile_hive_names(cluster: Cluster) -> None:
    got = cluster.client.run("hive_get", hive_id="h1")["hive"]
    assert got["state"] == "up" and got["url"].startswith("http://127.0.0.1:")
    assert [d["id"] for d in got["devices"]] == ["cpu"] and got["installed"] == {}
    with pytest.raises(JobFailed) as missing:
        cluster.client.run("hive_get", hive_id="h9")
    assert missing.value.code == "hive_not_found"
    # not in hives.conf: nothing to install, said plainly
    with pytest.raises(JobFailed) as not_configured:
        cluster.client.run("hive_install", hive_id="h1")
    assert not_configured.value.code == "hive_not_found"
    assert "configured: none" in str(not_configured.value)
    for hostile in ("../../etc", "a b", "x" * 65, "$(reboot)", ""):
        r = httpx.post(f"{cluster.queen.url}/v1/jobs",
                       json={"operation": "hive_install", "hive_id": hostile})
        assert r.status_code == 400 and r.json()["error"]["param"], (hostile, r.text)
