"""One inference request's spans: the queen's server span, its admission, scheduling and
relay children, and the worker's server and generation spans under the relay's, in one
trace. Nothing is recorded when tracing is off, and no content ever is."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from rbee.tracing.middleware import TracedRequests
from tests.unit.queen.quota_rig import BOOT
from tests.unit.tracing.rig import Traced, by_name, one, traced_rig

CHAT = "POST /v1/chat/completions"
SECRET_PROMPT = "my-secret-prompt-7f3a"


def _parent(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def _check_trace(spans: list[ReadableSpan], prompt: int, completion: int) -> None:
    server = one(spans, "queen-rbee", CHAT, SpanKind.SERVER)
    assert server.kind is SpanKind.SERVER and server.parent is None
    trace_id = server.context.trace_id
    assert all(s.context.trace_id == trace_id for s in spans)
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/v1/chat/completions"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["rbee.model"] == "rbee-fake"
    # Admitted at once: no admission span (only a wait gets one).
    assert not by_name(spans, "queen-rbee", "rbee.admission")
    schedule = one(spans, "queen-rbee", "rbee.schedule")
    relay = by_name(spans, "queen-rbee", CHAT, SpanKind.CLIENT)
    assert len(relay) == 1
    for child in (schedule, relay[0]):
        assert _parent(child) == server.context.span_id
    assert schedule.attributes is not None and schedule.attributes["rbee.worker.id"] == "w1"
    assert relay[0].attributes is not None
    assert relay[0].attributes["http.response.status_code"] == 200
    assert relay[0].attributes["rbee.worker.id"] == "w1"
    worker = one(spans, "rbee-worker", CHAT)
    assert worker.kind is SpanKind.SERVER and _parent(worker) == relay[0].context.span_id
    assert worker.resource.attributes["service.instance.id"] == "w1"
    generate = one(spans, "rbee-worker", "rbee.generate")
    assert _parent(generate) == worker.context.span_id
    assert generate.attributes is not None
    assert generate.attributes["gen_ai.usage.input_tokens"] == prompt
    assert generate.attributes["gen_ai.usage.output_tokens"] == completion
    assert generate.attributes["rbee.finish_reason"] == "length"
    # The relay span covers the worker's whole answer; the queen's covers the relay's.
    assert relay[0].start_time is not None and worker.start_time is not None
    assert relay[0].start_time <= worker.start_time
    assert relay[0].end_time is not None and generate.end_time is not None
    assert server.end_time is not None and server.end_time >= relay[0].end_time


def _no_content(spans: list[ReadableSpan], *secrets: str) -> None:
    dumped = json.dumps([{k: str(v) for k, v in (s.attributes or {}).items()} | {
        "name": s.name, "events": [e.name for e in s.events]} for s in spans])
    for secret in secrets:
        assert secret not in dumped


async def test_a_whole_answer_is_one_trace_across_queen_and_worker(tmp_path: Path) -> None:
    async with traced_rig(tmp_path) as r:
        got = await r.chat(messages=[{"role": "user", "content": SECRET_PROMPT}], max_tokens=5)
        assert got.status_code == 200, got.text
        usage = got.json()["usage"]
        spans = r.spans()
    _check_trace(spans, usage["prompt_tokens"], 5)
    _no_content(spans, SECRET_PROMPT, got.json()["choices"][0]["message"]["content"], BOOT)


async def test_a_stream_s_spans_end_when_the_stream_does(tmp_path: Path) -> None:
    async with traced_rig(tmp_path) as r:
        got = await r.chat(messages=[{"role": "user", "content": SECRET_PROMPT}], max_tokens=6,
                           stream=True, stream_options={"include_usage": True})
        assert got.status_code == 200
        frames = [json.loads(line[6:]) for line in got.text.splitlines()
                  if line.startswith("data: {")]
        spans = r.spans()
    text = "".join(f["choices"][0]["delta"].get("content") or "" for f in frames if f["choices"])
    _check_trace(spans, frames[-1]["usage"]["prompt_tokens"], 6)
    _no_content(spans, SECRET_PROMPT, text, BOOT)


async def test_a_request_that_queues_has_an_admission_span_as_long_as_its_wait(
        tmp_path: Path) -> None:
    async with traced_rig(tmp_path, slots=1) as r:
        r.engine.gate.clear()  # the first request holds the worker's only slot
        first = asyncio.create_task(r.chat(messages=[{"role": "user", "content": "a"}],
                                           max_tokens=1))
        while r.engine.waiting == 0:
            await asyncio.sleep(0.01)
        second = asyncio.create_task(r.chat(messages=[{"role": "user", "content": "b"}],
                                            max_tokens=1))
        while r.svc.admission.queued("rbee-fake") == 0:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        r.engine.gate.set()
        assert (await first).status_code == 200 and (await second).status_code == 200
        spans = r.spans()
    admission = one(spans, "queen-rbee", "rbee.admission")
    servers = {s.context.span_id: s for s in by_name(spans, "queen-rbee", CHAT, SpanKind.SERVER)}
    assert len(servers) == 2 and _parent(admission) in servers
    assert admission.attributes == {"rbee.model": "rbee-fake", "rbee.priority": "interactive"}
    assert admission.end_time is not None and admission.start_time is not None
    assert admission.end_time - admission.start_time >= 40_000_000  # ns: it waited


async def test_a_tenant_s_request_names_its_tenant_id_never_its_key(tmp_path: Path) -> None:
    async with traced_rig(tmp_path) as r:
        key = await _tenant_key(r)
        got = await r.chat(key["key"], messages=[{"role": "user", "content": "hi"}],
                           max_tokens=2)
        assert got.status_code == 200, got.text
        spans = r.spans()
    server = one(spans, "queen-rbee", CHAT, SpanKind.SERVER)
    assert server.attributes is not None
    assert server.attributes["rbee.tenant.id"] == key["tenant_id"]
    _no_content(spans, key["key"])


async def test_a_refused_request_is_traced_with_its_status(tmp_path: Path) -> None:
    async with traced_rig(tmp_path) as r:
        bad = await r.http.post("/v1/chat/completions", headers={"Authorization": "Bearer x"},
                                json={"model": "rbee-fake"})
        unknown = await r.chat(messages=[{"role": "user", "content": "hi"}],
                               model="no-such-model")
        spans = r.spans()
    assert bad.status_code == 401 and unknown.status_code == 404
    statuses = sorted((s.attributes or {}).get("http.response.status_code", 0)
                      for s in by_name(spans, "queen-rbee", CHAT))
    assert statuses == [401, 404]
    assert not by_name(spans, "rbee-worker", CHAT)  # neither reached a worker
    assert all(s.status.status_code is not StatusCode.ERROR
               for s in by_name(spans, "queen-rbee", CHAT))  # a client's error: not ours


async def test_a_caller_s_traceparent_is_continued_and_a_malformed_one_ignored(
        tmp_path: Path) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    async with traced_rig(tmp_path) as r:
        for parent in (f"00-{trace_id}-00f067aa0ba902b7-01", "00-zz-" + "x" * 5000 + "-01"):
            got = await r.http.post("/v1/chat/completions", headers={
                "Authorization": f"Bearer {BOOT}", "traceparent": parent},
                json={"model": "rbee-fake", "messages": [{"role": "user", "content": "x"}],
                      "max_tokens": 1})
            assert got.status_code == 200
        spans = r.spans()
        # Straight to the worker without a trace context (the queen did not trace it): no span.
        worker = r.svc.registry.find_worker("w1")
        assert worker is not None
        async with httpx.AsyncClient() as client:
            direct = await client.post(f"{worker.url}/v1/chat/completions", json={
                "model": "rbee-fake", "messages": [{"role": "user", "content": "x"}],
                "max_tokens": 1})
        assert direct.status_code == 200
        assert len(r.spans()) == len(spans)
    servers = sorted(by_name(spans, "queen-rbee", CHAT), key=lambda s: s.start_time or 0)
    servers = [s for s in servers if s.kind is SpanKind.SERVER]
    assert f"{servers[0].context.trace_id:032x}" == trace_id
    assert servers[0].parent is not None and servers[0].parent.span_id == 0x00f067aa0ba902b7
    assert servers[1].parent is None  # malformed: a new trace, not an error


async def test_off_nothing_is_installed_recorded_or_sent(tmp_path: Path) -> None:
    """A queen without tracing: no middleware, no span, and no traceparent to its worker
    (which, tracing on, traces only what its caller traced: nothing)."""
    async with traced_rig(tmp_path, queen=False) as r:
        assert not any(m.cls is TracedRequests for m in r.app.user_middleware)
        assert r.svc.tracing is None
        got = await r.chat(messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        assert got.status_code == 200
        spans = r.spans()
    assert spans == []


def test_off_no_opentelemetry_sdk_is_even_imported(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from rbee.queen.app import create_app\n"
        "from rbee.queen.settings import QueenSettings\n"
        "from rbee.worker import app as worker_app\n"
        "from rbee.hive import app as hive_app\n"
        f"create_app(QueenSettings(state_dir={str(tmp_path)!r}, local_hive=False))\n"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk',"
        " 'opentelemetry.exporter', 'rbee.tracing.tracer', 'rbee.tracing.middleware'))))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.strip() == "[]"


async def _tenant_key(r: Traced) -> dict[str, str]:
    async def admin(method: str, path: str, body: dict[str, str]) -> dict[str, str]:
        got = await r.http.request(method, f"/v1/admin{path}", json=body,
                                   headers={"Authorization": f"Bearer {BOOT}"})
        assert got.status_code == 200, got.text
        out: dict[str, str] = got.json()
        return out

    await admin("POST", "/tenants", {"name": "acme"})
    user = await admin("POST", "/users", {"tenant": "acme", "name": "ann"})
    return await admin("POST", "/keys", {"user": user["id"]})
