"""The worker's video protocol: SSE progress per step ending with a `video.file` frame, the
MP4 fetched once (then gone), a deadline that ends the video as an error frame, bad input
and a worker of another kind refused before anything is made."""

from __future__ import annotations

import io
import json

import av
import httpx

from rbee.api.cluster import DEADLINE_HEADER
from rbee.engines.fake import FakeEngine
from rbee.engines.fake_video import FakeVideoMaker
from rbee.worker.app import create_app
from rbee.worker.runtime import Runtime

BODY = {"prompt": "a bee", "width": 32, "height": 16, "frames": 4, "fps": 8, "steps": 3}


async def _client(engine: FakeVideoMaker | FakeEngine) -> httpx.AsyncClient:
    runtime = Runtime(engine)
    await runtime.load_engine()
    app = create_app(runtime, model="vid")
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w")


def _frames(sse: str) -> list[dict[str, object]]:
    return [json.loads(line[6:]) for line in sse.splitlines()
            if line.startswith("data: {")]


async def test_progress_per_step_then_the_file_once() -> None:
    async with await _client(FakeVideoMaker()) as client:
        r = await client.post("/v1/videos/generations", json=BODY)
        assert r.status_code == 200 and r.text.endswith("data: [DONE]\n\n")
        frames = _frames(r.text)
        assert [(f["step"], f["steps"]) for f in frames[:-1]] == [(0, 3), (1, 3), (2, 3),
                                                                  (3, 3)]
        done = frames[-1]
        assert done["object"] == "video.file" and done["media_type"] == "video/mp4"
        got = await client.post("/v1/videos/files", json={"file": done["file"]})
        assert got.headers["content-type"] == "video/mp4"
        assert len(got.content) == done["bytes"]
        with av.open(io.BytesIO(got.content)) as container:
            assert len(list(container.decode(video=0))) == 4
        again = await client.post("/v1/videos/files", json={"file": done["file"]})
        assert again.status_code == 404  # fetched once, then deleted
        assert again.json()["error"]["param"] == "file"


async def test_the_deadline_ends_the_video_with_an_error_frame() -> None:
    engine = FakeVideoMaker(step_seconds=0.05)
    async with await _client(engine) as client:
        r = await client.post("/v1/videos/generations", json={**BODY, "steps": 100},
                              headers={DEADLINE_HEADER: "0.2"})
    frames = _frames(r.text)
    assert frames[-1]["error"]["code"] == "deadline_exceeded"  # type: ignore[index]
    assert engine.stopped_at < 100


async def test_bad_input_and_hostile_file_ids_are_400s() -> None:
    async with await _client(FakeVideoMaker()) as client:
        for body, param in (({**BODY, "width": 30}, "width"), ({**BODY, "prompt": ""}, "prompt"),
                            ({**BODY, "frames": 0}, "frames"), ({**BODY, "x": 1}, "x")):
            r = await client.post("/v1/videos/generations", json=body)
            assert r.status_code == 400 and r.json()["error"]["param"] == param, body
        for file_id in ("../../etc/passwd", "vid_" + "0" * 31):
            r = await client.post("/v1/videos/files", json={"file": file_id})
            assert r.status_code == 400 and r.json()["error"]["param"] == "file"


async def test_a_chat_worker_makes_no_videos() -> None:
    async with await _client(FakeEngine()) as client:
        r = await client.post("/v1/videos/generations", json=BODY)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "wrong_model_kind"
    assert "/v1/chat/completions" in r.json()["error"]["message"]
