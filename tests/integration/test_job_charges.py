"""Every modality is charged and counted (issue 13): the job API's image, speak, transcribe and
video jobs and POST /v1/videos book their worst case on the tenant's quotas before the job
exists, settle what they used when they end, and give it back when they fail; transcriptions
are charged by the audio's seconds in every response format. A real queen daemon with its
hive and fake-engine workers."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from rbee.client import QueenClient
from rbee.core.errors import RbeeError
from tests.support.audio import tone_wav
from tests.support.daemons import Daemon, rbee_env, run_cli, running_queen

# The SDK marks its Videos API deprecated (OpenAI retires Sora); the wire API is what we serve.
pytestmark = [pytest.mark.e2e,
              pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")]
BOOT = "bootstrap-s3cret-for-the-charges-test"
AUDIO = tone_wav([0.5, 0.5, 0.0])  # three seconds, two of them loud (the fake hears two)
PRICES = {"rbee-fake-image": {"images": 2.0},
          "rbee-fake-speech": {"audio_seconds": 1.0},
          "rbee-fake-transcription": {"audio_seconds": 10.0},
          "rbee-fake-video": {"video_seconds": 100.0}}


@pytest.fixture(scope="module")
def queen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    env = rbee_env(tmp_path_factory.mktemp("charges"), RBEE_QUEEN_API_TOKEN=BOOT,
                   RBEE_QUEEN_VIDEO_MODEL="rbee-fake-video", RBEE_QUEEN_VIDEO_STEPS="2",
                   RBEE_QUEEN_VIDEO_FPS="2", RBEE_WORKER_FAKE_STEP_SECONDS="0.02")
    yield from running_queen(env)


def _admin(queen: Daemon, method: str, path: str, body: Any = None) -> Any:
    r = httpx.request(method, f"{queen.url}{path}", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {BOOT}"})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def priced(queen: Daemon) -> None:
    for model, prices in PRICES.items():
        _admin(queen, "PUT", f"/v1/admin/prices/{model}", prices)


def _tenant_key(queen: Daemon, name: str, budget: float | None = None) -> tuple[str, str]:
    _admin(queen, "POST", "/v1/admin/tenants", {"name": name})
    user = _admin(queen, "POST", "/v1/admin/users", {"tenant": name, "name": "ann"})
    made = _admin(queen, "POST", "/v1/admin/keys", {"user": user["id"]})
    if budget is not None:
        _admin(queen, "PUT", f"/v1/admin/tenants/{name}/limits", {"budget": budget})
    return made["key"], made["id"]


def _usage(queen: Daemon, key_id: str) -> dict[str, dict[str, Any]]:
    rows = _admin(queen, "GET", f"/v1/usage?key={key_id}")["data"]
    return {r["model"]: r for r in rows}


def _result(jobs: QueenClient, job_id: str) -> dict[str, Any]:
    [result] = [e.data for e in jobs.follow(job_id) if e.event == "result"]
    return dict(result)


def test_each_job_modality_is_charged_and_counted(queen: Daemon, priced: None) -> None:
    key, key_id = _tenant_key(queen, "jobs-co")
    sdk = openai.OpenAI(base_url=f"{queen.url}/v1", api_key=key, max_retries=0, timeout=60)
    file_id = sdk.files.create(file=("a.wav", AUDIO), purpose="user_data").id
    with QueenClient(queen.url, key) as jobs:
        image = _result(jobs, jobs.submit("image", model="rbee-fake-image", prompt="a bee",
                                          size="16x16", n=2))
        speak = _result(jobs, jobs.submit("speak", model="rbee-fake-speech", voice="alloy",
                                          input="twenty characters!!!"))
        heard = _result(jobs, jobs.submit("transcribe", model="rbee-fake-transcription",
                                          file_id=file_id, response_format="text"))
        video = _result(jobs, jobs.submit("video", model="rbee-fake-video", prompt="a bee",
                                          seconds="2", size="16x16"))
    assert len(image["images"]) == 2 and speak["bytes"] > 0 and video["bytes"] > 0
    assert heard["transcript"].strip()  # text, written by the queen from the worker's json
    used = _usage(queen, key_id)
    assert (used["rbee-fake-image"]["images"], used["rbee-fake-image"]["cost"]) == (2, 4.0)
    assert used["rbee-fake-speech"]["audio_seconds"] == 2.0  # 20 characters at 10/s
    transcribed = used["rbee-fake-transcription"]
    assert (transcribed["audio_seconds"], transcribed["cost"]) == (3.0, 30.0)  # the file's
    assert (used["rbee-fake-video"]["video_seconds"], used["rbee-fake-video"]["cost"]) \
        == (2.0, 200.0)
    assert all(r["requests"] == 1 for r in used.values())


def test_a_video_over_budget_is_refused_before_it_exists(queen: Daemon, priced: None) -> None:
    key, key_id = _tenant_key(queen, "thrifty", budget=250.0)  # one 2 s video, not two
    sdk = openai.OpenAI(base_url=f"{queen.url}/v1", api_key=key, max_retries=0, timeout=60)
    video = sdk.videos.create_and_poll(model="rbee-fake-video", prompt="one", seconds="2",
                                       size="16x16", poll_interval_ms=100)
    assert video.status == "completed"
    with pytest.raises(openai.RateLimitError) as refused:
        sdk.videos.create(model="rbee-fake-video", prompt="two", seconds="2", size="16x16")
    assert "budget" in refused.value.message
    with QueenClient(queen.url, key) as jobs, pytest.raises(RbeeError) as as_job:
        jobs.submit("video", model="rbee-fake-video", prompt="three", seconds="2",
                    size="16x16")
    assert as_job.value.code == "rate_limit_exceeded" or "budget" in str(as_job.value)
    assert [v.id for v in sdk.videos.list().data] == [video.id]  # no job was made
    assert _usage(queen, key_id)["rbee-fake-video"]["cost"] == 200.0


def test_a_cancelled_video_gives_its_booking_back(queen: Daemon, priced: None) -> None:
    key, key_id = _tenant_key(queen, "unlucky", budget=150.0)
    sdk = openai.OpenAI(base_url=f"{queen.url}/v1", api_key=key, max_retries=0, timeout=60)
    stopped = sdk.videos.create(model="rbee-fake-video", prompt="stop", seconds="1",
                                size="16x16", extra_body={"steps": 200})
    while sdk.videos.retrieve(stopped.id).progress < 2:
        time.sleep(0.02)
    sdk.videos.delete(stopped.id)  # cancelled mid-way: nothing is billed for it
    # the whole budget is there again: another 1 s video (100) fits
    video = sdk.videos.create_and_poll(model="rbee-fake-video", prompt="a", seconds="1",
                                       size="16x16", poll_interval_ms=100)
    assert video.status == "completed"
    assert _usage(queen, key_id)["rbee-fake-video"]["cost"] == 100.0


@pytest.mark.parametrize(("fmt", "stream"), [("text", False), ("srt", False), ("vtt", False),
                                             ("json", True)])
def test_a_transcription_is_charged_its_seconds_in_every_format(
        queen: Daemon, priced: None, fmt: str, stream: bool) -> None:
    key, key_id = _tenant_key(queen, f"listener-{fmt}-{int(stream)}")
    files = {"file": ("a.wav", AUDIO, "audio/wav")}
    data = {"model": "rbee-fake-transcription", "response_format": fmt,
            "stream": str(stream).lower()}
    r = httpx.post(f"{queen.url}/v1/audio/transcriptions", files=files, data=data,
                   headers={"Authorization": f"Bearer {key}"}, timeout=60)
    assert r.status_code == 200, r.text
    if stream:
        frames = [json.loads(line[6:]) for line in r.text.splitlines()
                  if line.startswith("data: {")]
        assert frames[-1]["type"] == "transcript.text.done"
        assert frames[-1]["usage"] == {"type": "duration", "seconds": 3}
    elif fmt == "text":
        assert r.headers["content-type"].startswith("text/plain")
        assert r.text.endswith("\n") and not r.text.startswith("{")
    else:
        assert r.text.startswith("WEBVTT" if fmt == "vtt" else "1\n00:00:00,000 --> ")
    used = _usage(queen, key_id)["rbee-fake-transcription"]
    assert (used["audio_seconds"], used["cost"], used["requests"]) == (3.0, 30.0, 1)


def test_an_upload_too_long_for_the_budget_is_refused_unheard(
        queen: Daemon, priced: None, tmp_path: Path) -> None:
    # Its worst case (what 256 KB can hold at 4 kb/s, 512 s) costs 5120 > 100: refused
    # before a worker hears it, and the usage table stays empty.
    key, key_id = _tenant_key(queen, "tight", budget=100.0)
    audio = tone_wav([0.5] * 8)  # 256 KB: its worst case is capped at max_audio_seconds
    env = {**queen.env, "RBEE_API_TOKEN": key}
    path = tmp_path / "long.wav"
    path.write_bytes(audio)
    refused = run_cli(env, "transcribe", str(path), "-m", "rbee-fake-transcription")
    assert refused.returncode == 1 and "budget" in refused.stderr
    assert "rbee-fake-transcription" not in _usage(queen, key_id)
