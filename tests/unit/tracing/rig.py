"""An in-process queen in front of a real fake-engine worker on a real port, each with its
own tracer (or none) exporting to one in-memory exporter: their spans side by side."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from rbee.api.cluster import HiveTelemetry, WorkerInfo
from rbee.core.clock import FakeClock
from rbee.core.states import WorkerState
from rbee.queen.app import create_app
from rbee.queen.services import QueenServices, build_services
from rbee.queen.settings import QueenSettings
from rbee.tracing.tracer import Tracing, start_tracing
from rbee.worker.app import create_app as create_worker_app
from rbee.worker.runtime import Runtime
from tests.unit.queen.quota_rig import BOOT, CPU, MODEL, START, GatedEngine, _free_port


@dataclass
class Traced:
    http: httpx.AsyncClient
    svc: QueenServices
    app: Any
    exporter: InMemorySpanExporter
    tracers: tuple[Tracing, ...]
    engine: GatedEngine

    def spans(self) -> list[ReadableSpan]:
        for tracing in self.tracers:
            tracing.provider.force_flush()
        return list(self.exporter.get_finished_spans())

    async def chat(self, key: str = BOOT, **fields: Any) -> httpx.Response:
        return await self.http.post("/v1/chat/completions", headers={
            "Authorization": f"Bearer {key}"}, json={"model": MODEL, **fields})


@asynccontextmanager
async def traced_rig(tmp_path: Path, *, queen: bool = True, worker: bool = True,
                     slots: int = 8) -> AsyncIterator[Traced]:
    exporter = InMemorySpanExporter()
    queen_tracing = start_tracing("queen-rbee", exporter=exporter) if queen else None
    worker_tracing = start_tracing("rbee-worker", exporter=exporter,
                                   instance="w1") if worker else None
    engine = GatedEngine(slots=slots)
    runtime = Runtime(engine)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(
        create_worker_app(runtime, model=MODEL, tracing=worker_tracing), host="127.0.0.1",
        port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started or runtime.state is not WorkerState.READY:
            await asyncio.sleep(0.01)
        info = WorkerInfo(id="w1", hive_id="h1", model=MODEL, model_path="", device="cpu",
                          engine="fake", url=f"http://127.0.0.1:{port}",
                          state=WorkerState.READY, slots=slots)
        config = QueenSettings(api_token=BOOT, state_dir=tmp_path, local_hive=False)
        svc = build_services(config, clock=FakeClock(start=START), tracing=queen_tracing)
        svc.registry.report(HiveTelemetry(hive_id="h1", url="http://127.0.0.1:9", version="0",
                                          pid=1, devices=[CPU], workers=[info]))
        app = create_app(config, services=svc, tracing=queen_tracing)
        async with (app.router.lifespan_context(app),  # type: ignore[attr-defined]
                    httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                      base_url="http://queen", timeout=30) as http):
            yield Traced(http, svc, app, exporter,
                         tuple(t for t in (queen_tracing, worker_tracing) if t is not None),
                         engine)
    finally:
        server.should_exit = True  # each app's lifespan shuts its own tracing down
        await task


def by_name(spans: Iterable[ReadableSpan], service: str, name: str,
            kind: SpanKind | None = None) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name and kind in (None, s.kind)
            and s.resource.attributes.get("service.name") == service]


def one(spans: Iterable[ReadableSpan], service: str, name: str,
        kind: SpanKind | None = None) -> ReadableSpan:
    """The one span of that name (a request's server span and its relay's share one: pass
    the kind)."""
    found = by_name(spans, service, name, kind)
    assert len(found) == 1, (service, name, [(s.name, s.resource.attributes) for s in spans])
    return found[0]
