"""A worker serves as many requests at once as its engine declares, and says so."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import httpx
import pytest

from rbee.api.cluster import WorkerEvent
from rbee.core.errors import InvalidRequest
from rbee.engines.base import GenerationRequest, Output
from rbee.engines.fake import FakeEngine
from rbee.engines.registry import EngineOptions, build_engine
from rbee.worker.app import create_app
from rbee.worker.runtime import Runtime

REQUEST = GenerationRequest(kind="completion", prompt="x", max_tokens=3)


class MeetingEngine(FakeEngine):
    """A fake engine whose generations only start once `slots` of them meet: with fewer
    running at once, the meeting times out and the generation fails."""

    def __init__(self, slots: int) -> None:
        super().__init__(slots=slots)
        self._meeting = threading.Barrier(slots, timeout=5)
        self._lock = threading.Lock()
        self.running = self.peak = 0

    def generate(self, request: GenerationRequest, cancel: threading.Event) -> Iterator[Output]:
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            self._meeting.wait()
            yield from super().generate(request, cancel)
        finally:
            with self._lock:
                self.running -= 1


async def _answer(runtime: Runtime) -> int:
    return len([item async for item in runtime.generate(REQUEST)])


async def test_a_4_slot_engine_serves_4_at_once_and_never_more() -> None:
    engine = MeetingEngine(slots=4)
    runtime = Runtime(engine)
    await runtime.load_engine()
    answers = await asyncio.wait_for(asyncio.gather(*(_answer(runtime) for _ in range(8))), 10)
    assert answers == [4] * 8  # 3 pieces and a Finish each: every meeting of 4 happened
    assert engine.peak == 4 and runtime.load == 0


async def test_the_ready_event_and_ready_status_carry_the_slots() -> None:
    said: list[WorkerEvent] = []
    runtime = Runtime(FakeEngine(slots=32), on_event=said.append)
    await runtime.load_engine()
    assert said[-1].event == "ready" and said[-1].slots == 32
    app = create_app(runtime, model="m")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://w") as client:
        body = (await client.get("/ready")).json()
    assert body["slots"] == 32 and body["ready"]


def test_slots_reach_the_fake_engine_and_llama_cpp_refuses_more_than_one() -> None:
    assert build_engine("fake", EngineOptions(model_path="", slots=4)).slots == 4
    assert build_engine("fake", EngineOptions(model_path="")).slots == 1
    assert build_engine("llama_cpp", EngineOptions(model_path="x.gguf")).slots == 1
    with pytest.raises(InvalidRequest, match="at most 1"):
        build_engine("llama_cpp", EngineOptions(model_path="x.gguf", slots=2))
