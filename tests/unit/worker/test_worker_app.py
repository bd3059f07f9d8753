"""The worker's API: refusals before a response starts, and the deadline the queen passes."""

from __future__ import annotations

import httpx
import pytest

from rbee.api.cluster import DEADLINE_HEADER
from rbee.core.clock import FakeClock
from rbee.engines.base import GenerationRequest
from rbee.engines.fake import FakeEngine
from rbee.worker.app import create_app
from rbee.worker.runtime import Runtime

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 200}


async def _client(runtime: Runtime) -> httpx.AsyncClient:
    # No lifespan: the engine is loaded (or not) by the test itself.
    app = create_app(runtime, model="m")
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w")


@pytest.mark.parametrize("stream", [True, False])
async def test_a_worker_still_loading_refuses_before_any_header(stream: bool) -> None:
    """A 503 envelope, not 200 followed by an error frame: the queen can still fail over."""
    async with await _client(Runtime(FakeEngine())) as client:
        r = await client.post("/v1/chat/completions", json={**CHAT, "stream": stream})
    assert r.status_code == 503
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["code"] == "worker_unavailable"


async def test_the_queens_deadline_stops_generation() -> None:
    runtime = Runtime(FakeEngine(tokens_per_second=50))
    await runtime.load_engine()
    async with await _client(runtime) as client:
        r = await client.post("/v1/chat/completions", json=CHAT,
                              headers={DEADLINE_HEADER: "0.2"})  # 200 tokens take 4 s
        assert r.status_code == 504
        assert r.json()["error"]["code"] == "deadline_exceeded"
        r = await client.post("/v1/chat/completions", json={**CHAT, "stream": True},
                              headers={DEADLINE_HEADER: "0.2"})
        assert r.status_code == 200
        assert '"code":"deadline_exceeded"' in r.text
        assert r.text.endswith("data: [DONE]\n\n")
        r = await client.post("/v1/chat/completions", json=CHAT,
                              headers={DEADLINE_HEADER: "soon"})
        assert r.status_code == 400
    assert runtime.load == 0  # every generation ended


async def test_a_stuck_engine_makes_health_say_stalled() -> None:
    """The HTTP side still answers when the engine hangs inside a token: /health must not
    say ok then, or the queen keeps routing to it."""
    clock = FakeClock()
    runtime = Runtime(FakeEngine(tokens_per_second=2), clock=clock, stall_after=10.0)
    await runtime.load_engine()
    async with await _client(runtime) as client:
        assert (await client.get("/health")).status_code == 200
        stream = runtime.generate(GenerationRequest(kind="completion", prompt="x",
                                                    max_tokens=100))
        await anext(stream)  # busy, and it just produced a token
        assert (await client.get("/health")).status_code == 200
        clock.advance(11.0)  # nothing since
        r = await client.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "stalled"
        await stream.aclose()  # type: ignore[attr-defined]
        assert (await client.get("/health")).status_code == 200  # idle again
