"""An upload forwarded from disk: the queen's rebuilt form reaches a real worker app whole,
through both transports; a dead first worker costs nothing but the try, and the second
gets the whole body again (read from the file's start: what failover relies on)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.responses import Response

from rbee.api.cluster import Device, HiveTelemetry, WorkerInfo
from rbee.api.transcription import TranscriptionRequest, to_form
from rbee.core.clock import FakeClock
from rbee.core.errors import WorkerUnreachable
from rbee.core.states import WorkerState
from rbee.engines.fake_transcription import FakeTranscriber
from rbee.models.catalog import parse_ref
from rbee.queen.credentials import Credentials
from rbee.queen.dispatch import Dispatcher, Hints, Silent
from rbee.queen.failover import with_failover
from rbee.queen.hive_client import HiveClient
from rbee.queen.registry import Registry
from rbee.queen.relay import Relay
from rbee.queen.transcription import form_body
from rbee.queen.transport import AiohttpTransport, Deadlines, WorkerTransport
from rbee.queen.transport_httptools import HttptoolsTransport
from rbee.web.uploads import Upload
from rbee.worker.app import create_app
from rbee.worker.runtime import Runtime
from rbee.worker.transcription import Limits
from tests.support.audio import tone_wav

MODEL = "rbee-fake-transcription"
CPU = Device(id="cpu", kind="cpu", name="cpu", memory_total=8 << 30, memory_free=8 << 30)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(wid: str, url: str) -> WorkerInfo:
    return WorkerInfo(id=wid, hive_id="h1", model="ears", model_path="", device="cpu",
                      engine="fake", kind="transcription", url=url, state=WorkerState.READY)


@pytest.fixture
async def live_url(tmp_path: Path) -> AsyncIterator[str]:
    runtime = Runtime(FakeTranscriber())
    app = create_app(runtime, model="ears", uploads=Limits(tmp_path, 1 << 24))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    while runtime.state is not WorkerState.READY:
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


@pytest.fixture(params=[HttptoolsTransport, AiohttpTransport])
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[WorkerTransport]:
    t: WorkerTransport = request.param(Deadlines(connect=0.3))
    yield t
    await t.close()


async def test_a_dead_worker_then_a_live_one_gets_the_whole_upload(
        tmp_path: Path, live_url: str, transport: WorkerTransport) -> None:
    audio = tone_wav([0.5, 0.0, 0.5, 0.5])  # 128 KB: several chunks of the file
    path = tmp_path / "upload-x"
    path.write_bytes(audio)
    body = TranscriptionRequest(model="ears", response_format="verbose_json")
    sent = form_body(to_form(body, "transcribe"), Upload(path, 'a "b".wav', "audio/wav",
                                                         len(audio)))
    registry = Registry(FakeClock(), 2.0)
    dead, live = _worker("w1", f"http://127.0.0.1:{_free_port()}"), _worker("w2", live_url)
    registry.report(HiveTelemetry(hive_id="h1", url="http://h1", version="0", pid=1,
                                  devices=[CPU], workers=[dead, live]))
    relay = Relay(registry, Credentials(), transport, Deadlines(connect=0.3))
    with pytest.raises(WorkerUnreachable):
        await relay.forward(dead, "/v1/audio/transcriptions", sent, stream=False)
    response = await relay.forward(live, "/v1/audio/transcriptions", sent, stream=False)
    assert response.status_code == 200, response.body
    answer = json.loads(response.body)
    assert answer["duration"] == 4.0  # every byte of the file arrived
    assert answer["text"] == ("Second 1 is loud. Second 2 is silent. Second 3 is loud. "
                              "Second 4 is loud.")
    assert path.exists()  # the relay reads the file; removing it is the route's


async def test_failover_sends_the_upload_whole_to_the_next_worker(
        tmp_path: Path, live_url: str, transport: WorkerTransport) -> None:
    """The route's own path: with_failover tries the dead worker, drops it, and the live
    one transcribes every second of the file."""
    audio = tone_wav([0.0, 0.5, 0.5])
    path = tmp_path / "upload-y"
    path.write_bytes(audio)
    sent = form_body(to_form(TranscriptionRequest(model=MODEL), "transcribe"),
                     Upload(path, "a.wav", "audio/wav", len(audio)))
    registry = Registry(FakeClock(), 2.0)
    for n, url in ((1, f"http://127.0.0.1:{_free_port()}"), (2, live_url)):
        info = _worker(f"w{n}", url).model_copy(update={"hive_id": f"h{n}", "model": MODEL})
        registry.report(HiveTelemetry(hive_id=f"h{n}", url=f"http://h{n}", version="0",
                                      pid=1, devices=[CPU], workers=[info]))
    relay = Relay(registry, Credentials(), transport, Deadlines(connect=0.3))
    tried: list[str] = []

    async def attempt(worker: WorkerInfo) -> Response:
        tried.append(worker.id)
        return await relay.forward(worker, "/v1/audio/transcriptions", sent, stream=False)

    async with httpx.AsyncClient(transport=httpx.MockTransport(
            lambda _: httpx.Response(503))) as http:
        dispatcher = Dispatcher(registry, HiveClient(http, Credentials()), spawn_timeout=1.0,
                                default_threads=None, hive_wait=0.0)
        response = await with_failover(dispatcher, registry, parse_ref(MODEL), Hints(),
                                       Silent(), attempt)
    assert tried == ["w1", "w2"]
    assert json.loads(response.body)["text"] == (
        "Second 1 is silent. Second 2 is loud. Second 3 is loud.")
