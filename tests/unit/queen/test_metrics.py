"""GET /metrics on an in-process queen in front of a real fake-engine worker (quota_rig):
each family the request path records, with the values the answers themselves carried."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from rbee.queen.metrics import OTHER, ModelLabels, QueenMetrics, public_model
from tests.unit.queen.metrics_scrape import label_values, value
from tests.unit.queen.quota_rig import BOOT, MODEL, Rig, rig

CHAT = "/v1/chat/completions"


async def scrape(r: Rig) -> str:
    got = await r.as_(BOOT, "GET", "/metrics")
    assert got.status_code == 200, got.text
    assert got.headers["content-type"].startswith("text/plain; version=0.0.4")
    return got.text


def stream_frames(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in text.splitlines()
            if line.startswith("data: {")]


async def test_requests_latency_and_tokens_match_what_the_answers_said(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        whole = await r.chat(BOOT, max_tokens=5)
        assert whole.status_code == 200
        streamed = await r.as_(BOOT, "POST", CHAT, json={
            "model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True,
            "max_tokens": 7, "stream_options": {"include_usage": True}})
        assert streamed.status_code == 200
        usage = [whole.json()["usage"], stream_frames(streamed.text)[-1]["usage"]]
        # A stream whose client did not ask for usage is counted too (the same prompt as
        # the last), and its client still gets no usage frame.
        quiet = await r.as_(BOOT, "POST", CHAT, json={
            "model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True,
            "max_tokens": 3})
        assert quiet.status_code == 200
        assert "usage" not in quiet.text and len(stream_frames(quiet.text)) >= 3
        text = await scrape(r)
    assert value(text, "rbee_requests_total", route=CHAT, model=MODEL, status="200") == 3
    assert value(text, "rbee_request_duration_seconds_count", route=CHAT, model=MODEL) == 3
    assert value(text, "rbee_prompt_tokens_total", model=MODEL) == sum(
        u["prompt_tokens"] for u in usage) + usage[1]["prompt_tokens"]
    assert value(text, "rbee_completion_tokens_total", model=MODEL) == 5 + 7 + 3
    # Two streams: one first token each; later frames each a gap (frames may share a read).
    assert value(text, "rbee_time_to_first_token_seconds_count", model=MODEL) == 2
    gaps = value(text, "rbee_inter_token_latency_seconds_count", model=MODEL)
    assert 2 <= gaps <= len(stream_frames(streamed.text)) + len(stream_frames(quiet.text))
    # Every admitted request is in the queue-wait histogram (0 s: a slot was free).
    assert value(text, "rbee_queue_wait_seconds_count", model=MODEL) == 3
    assert value(text, "rbee_scheduler_decision_seconds_count", decision="route") == 3
    # Read at scrape time from the registry and admission.
    assert value(text, "rbee_hive_up", hive="h1") == 1
    assert value(text, "rbee_workers", state="ready", kind="chat") == 1
    assert value(text, "rbee_device_memory_total_bytes", hive="h1", device="cpu") == 8 << 30
    assert value(text, "rbee_queue_depth", model=MODEL) == 0


async def test_route_labels_are_templates_never_raw_paths(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        for job in ("job-1", "job-2", "../../etc/passwd"):
            await r.as_(BOOT, "GET", f"/v1/jobs/{job}")
        await r.as_(BOOT, "GET", "/nope/12345")
        await r.http.post(CHAT, json={})  # no key: refused before routing
        text = await scrape(r)
    routes = label_values(text, "rbee_requests_total", "route")
    assert "/v1/jobs/{job_id}" in routes
    assert not any("job-" in route or "passwd" in route or "nope" in route for route in routes)
    # /nope/12345 and /etc/passwd (the client resolved the dots): one series for both
    assert value(text, "rbee_requests_total", route="unmatched", status="404") == 2
    assert value(text, "rbee_requests_total", route=CHAT, model="", status="401") == 1


def test_model_labels_are_public_names_and_bounded() -> None:
    labels = ModelLabels(cap=3)
    assert labels("smollm2") == "smollm2"
    assert labels("file:/home/ann/secret/models/tiny.gguf") == "file:tiny.gguf"
    assert public_model("hf:org/repo:x.gguf") == "hf:org/repo:x.gguf"  # a hub id is public
    assert labels("hf:org/a") == "hf:org/a"
    assert labels("hf:org/b") == OTHER  # past the cap
    assert labels("smollm2") == "smollm2"  # the first ones keep theirs
    for n in range(1000):  # hostile names grow nothing
        assert labels(f"file:/x/{n}.gguf") == OTHER
    assert len(labels._known) == 3  # the bound itself


async def test_refusals_are_counted_by_reason(tmp_path: Path) -> None:
    async with rig(tmp_path, slots=1, max_queue=0) as r:
        key = (await r.key("acme"))["key"]
        await r.admin("PUT", "/tenants/acme/limits", json={"requests_per_minute": 2})
        r.engine.gate.clear()  # the one slot stays taken
        held = asyncio.create_task(r.chat(BOOT))
        while r.engine.waiting == 0:
            await asyncio.sleep(0.01)
        full = await r.chat(BOOT)
        assert (full.status_code, full.json()["error"]["code"]) == (429, "queue_full")
        r.engine.gate.set()
        assert (await held).status_code == 200
        assert (await r.chat(key)).status_code == 200
        assert (await r.chat(key)).status_code == 200
        limited = await r.chat(key)
        assert (limited.status_code, limited.json()["error"]["code"]) == (
            429, "rate_limit_exceeded")
        forbidden = await r.as_(key, "GET", "/v1/workers")  # a 403 that is no admission
        assert forbidden.status_code == 403
        text = await scrape(r)
    assert value(text, "rbee_admission_rejections_total", reason="queue_full") == 1
    assert value(text, "rbee_admission_rejections_total", reason="rate_limit_exceeded") == 1
    assert label_values(text, "rbee_admission_rejections_total", "reason") == {
        "queue_full", "rate_limit_exceeded"}
    assert value(text, "rbee_requests_total", route=CHAT, model=MODEL, status="429") == 2
    # The tenant's two charged requests, with the engine's counts.
    assert value(text, "rbee_tenant_requests_total", tenant="acme") == 2
    assert value(text, "rbee_tenant_tokens_total", tenant="acme", direction="out") > 0


async def test_queue_wait_is_the_time_spent_queued(tmp_path: Path) -> None:
    async with rig(tmp_path, slots=1, max_queue=4) as r:
        r.engine.gate.clear()
        first = asyncio.create_task(r.chat(BOOT))
        while r.engine.waiting == 0:
            await asyncio.sleep(0.01)
        second = asyncio.create_task(r.chat(BOOT))
        while r.svc.admission.queued(MODEL) == 0:
            await asyncio.sleep(0.01)
        mid = await scrape(r)
        r.advance(2.5)  # the fake clock: the second request waits 2.5 s
        r.engine.gate.set()
        assert [(await t).status_code for t in (first, second)] == [200, 200]
        text = await scrape(r)
    assert value(mid, "rbee_queue_depth", model=MODEL) == 1
    assert value(mid, "rbee_requests_running", model=MODEL) == 1
    assert value(text, "rbee_queue_wait_seconds_count", model=MODEL) == 2
    assert value(text, "rbee_queue_wait_seconds_sum", model=MODEL) == pytest.approx(2.5)
    assert value(text, "rbee_queue_wait_seconds_bucket", model=MODEL, le="1.0") == 1


async def test_a_real_scrape_passes_promtool(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.chat(BOOT)
        key = (await r.key("acme"))["key"]
        await r.chat(key)
        text = await scrape(r)
    checked = await asyncio.to_thread(
        subprocess.run, ["promtool", "check", "metrics"], input=text, text=True,
        capture_output=True, timeout=30, check=False)
    assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout
    assert not checked.stderr.strip(), checked.stderr


def test_hooks_need_no_app() -> None:
    metrics = QueenMetrics()
    metrics.rejected("not_a_reason")  # anything unlisted is not a label value
    metrics.rejected("no_capacity")
    metrics.decided("place", 0.002)
    metrics.loaded("file:/srv/models/big.gguf", 3.0)
    from prometheus_client import generate_latest

    text = generate_latest(metrics.registry).decode()
    assert label_values(text, "rbee_admission_rejections_total", "reason") == {"no_capacity"}
    assert value(text, "rbee_model_load_seconds_sum", model="file:big.gguf") == 3.0
    assert value(text, "rbee_scheduler_decision_seconds_count", decision="place") == 1


async def test_refused_requests_cannot_take_the_model_labels(tmp_path: Path) -> None:
    """Naming made-up models (each a 404) must not use up the bounded model labels: the
    real model keeps its own label afterwards."""
    async with rig(tmp_path) as r:
        for n in range(40):
            made_up = await r.as_(BOOT, "POST", CHAT, json={
                "model": f"file:/x/evil-{n}.gguf", "messages": [{"role": "user", "content": "x"}]})
            assert made_up.status_code >= 400
        assert (await r.chat(BOOT)).status_code == 200
        text = await scrape(r)
    models = label_values(text, "rbee_requests_total", "model")
    assert MODEL in models and not any("evil" in m for m in models)


async def test_an_unhandled_error_is_counted_as_the_500_it_answers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not as 499 (a client gone): the error handler outside the metrics answers 500."""
    from rbee.queen.routes import openai as routes

    def broken(*_: object) -> list[dict[str, Any]]:
        raise RuntimeError("a bug in the queen")

    async with rig(tmp_path) as r:
        monkeypatch.setattr(routes, "model_entries", broken)
        with pytest.raises(RuntimeError):  # the in-process transport re-raises it
            await r.as_(BOOT, "GET", "/v1/models")
        text = await scrape(r)
    assert value(text, "rbee_requests_total", route="/v1/models", model="", status="500") == 1
    assert "499" not in label_values(text, "rbee_requests_total", "status")
