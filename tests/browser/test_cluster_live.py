"""The live cluster page and its actions in real Chromium, on ONE real queen + hive with the
real built-in model (SmolLM2) loaded: the model's worker shows up live, a worker is pinned
to a device from the GUI, kept warm and stopped, a job is followed and cancelled, and the
hive is seen going down when its process is killed — all without reloading the page.

The tests share the module's cluster and run in file order (the kill comes last).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from rbee.queen.local_hive import HIVE_ID
from tests.browser.conftest import RunningQueen, logged_in_page

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.model]
REAL = "smollm2-135m-instruct"
SLOW = 60_000  # ms: a real model loads on 2 shared cores


@pytest.fixture(scope="module")
def cluster(module_queen_factory: Callable[..., RunningQueen]) -> RunningQueen:
    # Fake workers (the pinned one) make 5 tokens/s, so a job lives long enough to cancel.
    return module_queen_factory(REAL, RBEE_WORKER_FAKE_TOKENS_PER_SECOND="5")


def _api(cluster: RunningQueen, method: str, path: str, **kw: Any) -> Any:
    r = httpx.request(method, f"{cluster.base_url}{path}", timeout=30,
                      headers={"Authorization": f"Bearer {cluster.admin_key}"}, **kw)
    assert r.status_code < 300, r.text
    return r.json()


@pytest.fixture
def page(cluster: RunningQueen, new_page: Callable[..., Page]) -> Page:
    return logged_in_page(new_page(viewport={"width": 1100, "height": 900}), *cluster)


def test_the_live_cluster_shows_the_real_models_worker(cluster: RunningQueen,
                                                        page: Page) -> None:
    hive = page.locator(f"[data-hive='{HIVE_ID}']")
    expect(hive.locator("[data-state]").first).to_have_text("up")
    worker = hive.locator(f".worker[data-model='{REAL}']")
    expect(worker.locator("[data-state]")).to_have_text("ready", timeout=SLOW)
    expect(worker).to_contain_text("chat · llama_cpp")
    expect(hive.locator(".device[data-device='cpu'] .bar")).to_be_visible()
    expect(hive.locator(".device[data-device='cpu'] .legend")).to_contain_text("reserved by rbee")
    # The page learnt it by push: what it shows is what the queen lists.
    (listed,) = [w for w in _api(cluster, "GET", "/v1/workers") if w["model"] == REAL]
    expect(page.locator(f".worker[data-worker='{listed['id']}']")).to_be_visible()
    # A streamed answer later, the worker shows how fast it made its tokens
    expect(worker.locator("[data-tokens-per-s]")).to_have_count(0)
    with httpx.stream("POST", f"{cluster.base_url}/v1/chat/completions", timeout=120,
                      headers={"Authorization": f"Bearer {cluster.admin_key}"},
                      json={"model": REAL, "stream": True, "max_tokens": 8, "messages": [
                          {"role": "user", "content": "Count to five."}]}) as answer:
        assert answer.status_code == 200 and len(list(answer.iter_lines())) > 3
    rate = worker.locator("[data-tokens-per-s]")
    expect(rate).to_contain_text("tokens/s", timeout=15_000)
    assert float(rate.get_attribute("data-tokens-per-s") or 0) > 0


def test_pin_a_worker_to_a_device_from_the_gui(cluster: RunningQueen, page: Page) -> None:
    form = page.locator(f"form[data-spawn='{HIVE_ID}/cpu']")
    form.get_by_label("Model to run on cpu").fill("rbee-fake")
    form.get_by_role("button", name="Spawn on cpu").click()
    log = page.locator("#action-log")
    expect(log.locator("[data-event='done']")).to_be_visible(timeout=SLOW)
    fake = page.locator(f"[data-hive='{HIVE_ID}'] .device[data-device='cpu'] "
                        ".worker[data-model='rbee-fake']")
    expect(fake.locator("[data-state]")).to_have_text("ready", timeout=SLOW)
    workers = [w for w in _api(cluster, "GET", "/v1/workers") if w["model"] == "rbee-fake"]
    assert [(w["hive_id"], w["device"]) for w in workers] == [(HIVE_ID, "cpu")]
    jobs = _api(cluster, "GET", "/v1/jobs", params={"limit": 20})["data"]
    (spawn,) = [j for j in jobs if j["operation"] == "worker_spawn"]
    assert spawn["request"]["device"] == "cpu" and spawn["request"]["placement"] == "pin"


def test_keep_a_worker_warm_from_the_gui(page: Page) -> None:
    fake = page.locator(".worker[data-model='rbee-fake']")
    fake.get_by_role("button", name="Keep warm").click()
    expect(fake).to_contain_text("kept warm", timeout=15_000)
    fake.get_by_role("button", name="Let it unload").click()
    expect(fake).not_to_contain_text("kept warm", timeout=15_000)


def test_follow_and_cancel_a_job_from_the_jobs_page(cluster: RunningQueen, page: Page) -> None:
    job = _api(cluster, "POST", "/v1/jobs", json={
        "operation": "infer", "model": "rbee-fake", "prompt": "a long answer", "max_tokens": 500})
    page.locator("#nav a[data-page='jobs']").click()
    row = page.locator(f"tr[data-job='{job['job_id']}']")
    expect(row).to_have_attribute("data-state", "running", timeout=15_000)
    row.get_by_role("button", name="Follow").click()
    expect(page.locator("#job-tokens")).not_to_be_empty(timeout=15_000)
    row.get_by_role("button", name="Cancel").click()
    expect(page.locator("#job-log [data-end='cancelled']")).to_be_visible(timeout=15_000)
    expect(page.locator(f"tr[data-job='{job['job_id']}']")).to_have_attribute(
        "data-state", "cancelled", timeout=15_000)
    assert _api(cluster, "GET", f"/v1/jobs/{job['job_id']}")["state"] == "cancelled"


def test_stop_a_worker_from_the_gui(cluster: RunningQueen, page: Page) -> None:
    fake = page.locator(".worker[data-model='rbee-fake']")
    fake.get_by_role("button", name="Stop rbee-fake").click()
    expect(page.locator("#action-log [data-event='done']")).to_be_visible(timeout=SLOW)
    expect(fake).to_have_count(0, timeout=15_000)
    assert not [w for w in _api(cluster, "GET", "/v1/workers") if w["model"] == "rbee-fake"]


def test_a_killed_hive_is_seen_going_down_without_a_reload(cluster: RunningQueen,
                                                            page: Page) -> None:
    state = page.locator(f"[data-hive='{HIVE_ID}'] header [data-state]")
    expect(state).to_have_text("up")
    page.evaluate("window.__same_document = true")
    # The queen restarts its hive within a second or two, so "down" may show only briefly:
    # the page itself records having shown it (a poll from here could fall between).
    page.evaluate("""() => {
      const shown = () => document.querySelector(
        "[data-hive='localhost'] header [data-state]")?.textContent === "down";
      new MutationObserver(() => { if (shown()) window.__saw_down = true; })
        .observe(document.body, { subtree: true, childList: true, characterData: true });
    }""")
    os.kill(_hive_pid(cluster), signal.SIGKILL)
    deadline = time.monotonic() + 20
    while not page.evaluate("() => window.__saw_down === true"):  # (the CSP forbids eval)
        assert time.monotonic() < deadline, "the page never showed the hive down"
        page.wait_for_timeout(100)
    assert page.evaluate("window.__same_document") is True  # no reload happened
    # The queen restarts the hive it owns; the page sees that too.
    expect(state).to_have_text("up", timeout=SLOW)


def _hive_pid(cluster: RunningQueen) -> int:
    hives = [p for p in cluster.daemon.descendants()
             if "rbee.hive" in " ".join(p.cmdline())]
    assert len(hives) == 1, hives
    return hives[0].pid
