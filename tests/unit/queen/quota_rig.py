"""An in-process queen (its lifespan, a bootstrap token, a fake clock) in front of one real
worker app with the fake engine on a real port: what the quota tests drive with the official
SDK. The engine can be held (`gate`) so requests stay in flight as long as a test needs."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import uvicorn

from rbee.api.cluster import Device, HiveTelemetry, WorkerInfo
from rbee.core.clock import FakeClock
from rbee.core.states import WorkerState
from rbee.engines.base import GenerationRequest, Output
from rbee.engines.fake import FakeEngine
from rbee.queen.app import create_app
from rbee.queen.services import QueenServices, build_services
from rbee.queen.settings import QueenSettings
from rbee.worker.app import create_app as create_worker_app
from rbee.worker.runtime import Runtime

BOOT = "bootstrap-admin-token-for-quota-tests"
MODEL = "rbee-fake"
START = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC: a minute's start
CPU = Device(id="cpu", kind="cpu", name="cpu", memory_total=8 << 30, memory_free=8 << 30)


class GatedEngine(FakeEngine):
    """The fake engine; while `gate` is clear every generation waits for it (cancellable)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = 0
        self._lock = threading.Lock()

    def generate(self, request: GenerationRequest, cancel: threading.Event
                 ) -> Iterator[Output]:
        with self._lock:
            self.waiting += 1
        try:
            while not self.gate.wait(0.01):
                if cancel.is_set():
                    break
        finally:
            with self._lock:
                self.waiting -= 1
        yield from super().generate(request, cancel)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Rig:
    def __init__(self, http: httpx.AsyncClient, svc: QueenServices, clock: FakeClock,
                 engine: GatedEngine, worker: WorkerInfo) -> None:
        self.http = http
        self.svc = svc
        self.clock = clock
        self.engine = engine
        self.worker = worker
        self.report()

    def report(self) -> None:
        """The worker's hive reports it (again: a test that moves the clock keeps it up)."""
        self.svc.registry.report(HiveTelemetry(hive_id="h1", url="http://127.0.0.1:9",
                                               version="0", pid=1, devices=[CPU],
                                               workers=[self.worker]))

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.report()

    async def as_(self, key: str, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}", **kw.pop("headers", {})}
        return await self.http.request(method, path, headers=headers, **kw)

    async def admin(self, method: str, path: str, **kw: Any) -> Any:
        r = await self.as_(BOOT, method, f"/v1/admin{path}", **kw)
        assert r.status_code == 200, r.text
        return r.json()

    async def key(self, tenant: str, labels: dict[str, str] | None = None,
                  **fields: Any) -> dict[str, Any]:
        tenants = {t["name"]: t for t in (await self.admin("GET", "/tenants"))["data"]}
        if tenant not in tenants:
            await self.admin("POST", "/tenants", json={"name": tenant,
                                                       "labels": labels or {}})
        users = await self.admin("GET", "/users")
        made = await self.admin("POST", "/users", json={"tenant": tenant,
                                                        "name": f"u{len(users['data'])}"})
        key: dict[str, Any] = await self.admin("POST", "/keys",
                                               json={"user": made["id"], **fields})
        return key

    def sdk(self, key: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url="http://queen/v1", api_key=key, max_retries=0,
                                  http_client=self.http)

    async def chat(self, key: str, text: str = "hello there", **fields: Any) -> httpx.Response:
        return await self.as_(key, "POST", "/v1/chat/completions", json={
            "model": MODEL, "messages": [{"role": "user", "content": text}], **fields})


@asynccontextmanager
async def rig(tmp_path: Path, slots: int = 200, tokens_per_second: float = 0.0,
              state: Path | None = None, **settings: Any) -> AsyncIterator[Rig]:
    engine = GatedEngine(slots=slots, tokens_per_second=tokens_per_second)
    runtime = Runtime(engine)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_worker_app(runtime, model=MODEL),
                                           host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started or runtime.state is not WorkerState.READY:
            await asyncio.sleep(0.01)
        worker = WorkerInfo(id="w1", hive_id="h1", model=MODEL, model_path="", device="cpu",
                            engine="fake", url=f"http://127.0.0.1:{port}",
                            state=WorkerState.READY, slots=slots)
        config = QueenSettings(api_token=BOOT, state_dir=state or tmp_path, local_hive=False,
                               **settings)
        clock = FakeClock(start=START)
        svc = build_services(config, clock=clock)
        app = create_app(config, services=svc)
        async with (app.router.lifespan_context(app),  # type: ignore[attr-defined]
                    httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                      base_url="http://queen", timeout=30) as http):
            yield Rig(http, svc, clock, engine, worker)
    finally:
        server.should_exit = True
        await task
