"""OpenAI's Videos API through real daemons (queen → hive → worker, the fake video engine)
with the official client: create_and_poll, download_content (an MP4 PyAV decodes with the
size and frame count asked for), list pages, retrieve, delete (the file goes too),
cancellation within a step, the `video` job, and bad input as OpenAI envelopes."""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import openai
import pytest

from tests.support.daemons import Daemon, rbee_env, run_cli, running_queen

# The SDK marks its Videos API deprecated (OpenAI retires Sora); the wire API is what we serve.
pytestmark = [pytest.mark.e2e,
              pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")]
MODEL = "rbee-fake-video"
STEP_SECONDS = 0.2


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rbee")


@pytest.fixture(scope="module")
def queen(root: Path) -> Iterator[Daemon]:
    env = rbee_env(root, RBEE_QUEEN_VIDEO_MODEL=MODEL, RBEE_QUEEN_VIDEO_STEPS="4",
                   RBEE_QUEEN_VIDEO_MAX_FRAMES="16",
                   RBEE_WORKER_FAKE_STEP_SECONDS=str(STEP_SECONDS))
    yield from running_queen(env)


@pytest.fixture
def client(queen: Daemon) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{queen.url}/v1", api_key="unused", max_retries=0)


def decode(mp4: bytes) -> tuple[int, int, int]:
    """(frames, width, height) of an MP4, decoded with PyAV."""
    with av.open(io.BytesIO(mp4)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return len(frames), frames[0].shape[1], frames[0].shape[0]


def artifacts(root: Path) -> list[Path]:
    folder = root / "state" / "artifacts"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def test_create_and_poll_then_download_a_valid_mp4(client: openai.OpenAI) -> None:
    video = client.videos.create_and_poll(model=MODEL, prompt="a red bee", seconds="1",
                                          size="64x48", poll_interval_ms=100)
    assert (video.status, video.progress, video.object) == ("completed", 100, "video")
    assert (video.seconds, video.size, video.model, video.prompt) == (
        "1", "64x48", MODEL, "a red bee")
    assert video.completed_at is not None and video.expires_at is not None
    assert video.expires_at > video.completed_at >= video.created_at
    mp4 = client.videos.download_content(video.id, variant="video").read()
    assert decode(mp4) == (8, 64, 48)  # 1 s at the queen's 8 fps


def test_the_sdk_default_model_and_oai_size_names_map_to_the_queen_s_model(
        client: openai.OpenAI) -> None:
    video = client.videos.create(prompt="a bee", seconds="1", size="64x64")
    assert video.status in ("queued", "in_progress")
    assert client.videos.poll(video.id, poll_interval_ms=100).status == "completed"


def test_progress_per_step_while_in_progress(client: openai.OpenAI) -> None:
    video = client.videos.create(model=MODEL, prompt="slow", seconds="1", size="64x64")
    seen = set()
    while (video := client.videos.retrieve(video.id)).status != "completed":
        seen.add(video.progress)
        time.sleep(STEP_SECONDS / 4)
    assert {25, 50} & seen  # steps 1 and 2 of 4 were seen as they happened


def test_list_pages_with_the_sdk_cursor(client: openai.OpenAI) -> None:
    ids = [client.videos.create(model=MODEL, prompt=f"p{i}", seconds="1", size="16x16").id
           for i in range(3)]
    first = client.videos.list(limit=2)
    assert [v.id for v in first.data] == ids[::-1][:2] and first.has_more
    listed = [v.id for v in client.videos.list(limit=2)]  # auto-paginates with `after`
    assert listed[:3] == ids[::-1]
    ascending = [v.id for v in client.videos.list(order="asc", limit=100).data]
    assert ascending.index(ids[0]) < ascending.index(ids[2])
    for i in ids:
        client.videos.poll(i, poll_interval_ms=100)


def test_delete_removes_the_video_and_its_file(client: openai.OpenAI, root: Path) -> None:
    video = client.videos.create_and_poll(model=MODEL, prompt="gone", seconds="1",
                                          size="16x16", poll_interval_ms=100)
    before = artifacts(root)
    deleted = client.videos.delete(video.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (video.id, True, "video.deleted")
    assert len(artifacts(root)) == len(before) - 2  # the bytes and their sidecar
    with pytest.raises(openai.NotFoundError) as err:
        client.videos.retrieve(video.id)
    assert err.value.body["param"] == "video_id"  # type: ignore[index]


def test_deleting_a_video_being_made_cancels_it(client: openai.OpenAI, queen: Daemon) -> None:
    video = client.videos.create(model=MODEL, prompt="stop", seconds="1", size="16x16",
                                 extra_body={"steps": 50})
    while client.videos.retrieve(video.id).progress < 4:
        time.sleep(0.05)
    client.videos.delete(video.id)
    # the worker is idle again within a step or two (its engine stopped)
    workers = httpx.get(f"{queen.url}/v1/workers", timeout=5).json()
    url = next(w["url"] for w in workers if w["model"] == MODEL)
    deadline = time.monotonic() + 3 * STEP_SECONDS
    while httpx.get(f"{url}/health", timeout=5).json()["load"] != 0:
        assert time.monotonic() < deadline, "the engine kept going after the cancel"
        time.sleep(0.02)


def test_cancelling_the_video_job_stops_it_within_a_step(queen: Daemon, root: Path,
                                                         client: openai.OpenAI) -> None:
    body = {"operation": "video", "model": MODEL, "prompt": "job", "seconds": "1",
            "size": "16x16", "steps": 60}  # a count no other test uses: its log line is ours
    job = httpx.post(f"{queen.url}/v1/jobs", json=body, timeout=5).json()["job_id"]
    video = client.videos.retrieve(job)  # the job is the video
    assert video.status in ("queued", "in_progress")
    while client.videos.retrieve(job).progress < 4:
        time.sleep(0.05)
    httpx.delete(f"{queen.url}/v1/jobs/{job}", timeout=10)
    failed = client.videos.retrieve(job)
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.code == "cancelled"
    events = httpx.get(f"{queen.url}/v1/jobs/{job}/stream", timeout=10).text
    assert "event: progress" in events and "event: cancelled" in events
    seen = max(json.loads(line[6:]).get("step", 0) for line in events.splitlines()
               if line.startswith("data: ") and '"step"' in line)
    # the engine's own word (its worker's log): it stopped within a step of the last one
    # the queen heard of
    deadline = time.monotonic() + 10
    while not (stopped := re.findall(r"video cancelled after step (\d+) of 60",
                                     "".join(p.read_text() for p in
                                             (root / "hive").rglob("*.log")))):
        assert time.monotonic() < deadline, "the engine never stopped"
        time.sleep(0.05)
    assert seen <= int(stopped[-1]) <= seen + 1, (seen, stopped)


@pytest.mark.parametrize(("fields", "param"), [
    ({"size": "640x"}, "size"),
    ({"size": "60x60"}, "size"),  # not a multiple of 8
    ({"size": "4096x4096"}, "size"),
    ({"seconds": "3"}, "seconds"),  # 24 frames, more than the 16 allowed
    ({"seconds": "-1"}, "seconds"),
    ({"prompt": "  "}, "prompt"),
    ({"model": "no-such-model"}, "model"),
    ({"model": "rbee-fake"}, "model"),  # a chat model
])
def test_bad_input_is_an_openai_envelope(client: openai.OpenAI, fields: dict[str, str],
                                         param: str) -> None:
    args = {"model": MODEL, "prompt": "x", "seconds": "1", "size": "16x16", **fields}
    with pytest.raises(openai.APIStatusError) as err:
        client.videos.create(**args)  # type: ignore[arg-type]
    assert err.value.status_code in (400, 404)
    assert err.value.body["param"] == param  # type: ignore[index]
    if fields.get("model") == "rbee-fake":
        assert err.value.body["code"] == "wrong_model_kind"  # type: ignore[index]


def test_unknown_ids_variants_remix_and_references(client: openai.OpenAI) -> None:
    for call in (lambda: client.videos.retrieve("video_nope"),
                 lambda: client.videos.download_content("video_nope"),
                 lambda: client.videos.delete("job-nope")):
        with pytest.raises(openai.NotFoundError) as err:
            call()
        assert err.value.body["param"] == "video_id"  # type: ignore[index]
    video = client.videos.create_and_poll(model=MODEL, prompt="v", seconds="1", size="16x16",
                                          poll_interval_ms=100)
    with pytest.raises(openai.BadRequestError) as bad:
        client.videos.download_content(video.id, variant="thumbnail")
    assert bad.value.body["param"] == "variant"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as bad:
        client.videos.remix(video.id, prompt="again")
    assert "remix" in bad.value.message
    with pytest.raises(openai.BadRequestError) as bad:
        client.videos.create(model=MODEL, prompt="x", seconds="1", size="16x16",
                             input_reference=("ref.png", b"\x89PNG", "image/png"))
    assert bad.value.body["param"] == "input_reference"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.videos.list(after="job-nope")
    for bad, param in (({"limit": 0}, "limit"), ({"order": "sideways"}, "order")):
        with pytest.raises(openai.BadRequestError) as bad_list:
            client.videos.list(**bad)  # type: ignore[arg-type]
        assert bad_list.value.body["param"] == param  # type: ignore[index]


def test_bad_placement_hints_are_a_400_naming_them(client: openai.OpenAI) -> None:
    for hint, param in (({"placement": "nowhere"}, "placement"),
                        ({"priority": "urgent"}, "priority"), ({"steps": 0}, "steps")):
        with pytest.raises(openai.BadRequestError) as err:
            client.videos.create(model=MODEL, prompt="x", seconds="1", size="16x16",
                                 extra_body=hint)
        assert err.value.body["param"] == param  # type: ignore[index]


def test_a_video_not_yet_made_has_no_content(client: openai.OpenAI) -> None:
    video = client.videos.create(model=MODEL, prompt="soon", seconds="1", size="16x16",
                                 extra_body={"steps": 200})  # 40 s: not done by the next call
    with pytest.raises(openai.ConflictError) as err:
        client.videos.download_content(video.id)
    assert err.value.body["code"] == "video_not_ready"  # type: ignore[index]
    client.videos.delete(video.id)


def test_models_say_video(queen: Daemon) -> None:
    cards = {m["id"]: m for m in httpx.get(f"{queen.url}/v1/models").json()["data"]}
    assert cards[MODEL]["kind"] == "video"


def test_a_video_job_out_of_bounds_is_a_400_not_a_job(queen: Daemon) -> None:
    body = {"operation": "video", "model": MODEL, "prompt": "x", "seconds": "1",
            "size": "4096x4096"}
    r = httpx.post(f"{queen.url}/v1/jobs", json=body, timeout=5)
    assert r.status_code == 400 and r.json()["error"]["param"] == "size"
    r = httpx.post(f"{queen.url}/v1/jobs", json={**body, "size": "16x16", "model": "rbee-fake"},
                   timeout=5)
    assert r.status_code == 400 and r.json()["error"]["code"] == "wrong_model_kind"


def test_the_job_result_names_the_artifact_which_downloads(queen: Daemon) -> None:
    body = {"operation": "video", "model": MODEL, "prompt": "job", "seconds": "1",
            "size": "32x16"}
    job = httpx.post(f"{queen.url}/v1/jobs", json=body, timeout=5).json()["job_id"]
    events = httpx.get(f"{queen.url}/v1/jobs/{job}/stream", timeout=30).text
    result = next(json.loads(line[6:]) for line in events.splitlines()
                  if line.startswith("data: ") and '"artifact_id"' in line)
    assert "base64" not in events and len(events) < 5000  # progress and a URL, no bytes
    assert result["url"] == f"/v1/artifacts/{result['artifact_id']}"
    got = httpx.get(f"{queen.url}{result['url']}", timeout=10)
    assert got.headers["content-type"] == "video/mp4"
    assert len(got.content) == result["bytes"] and decode(got.content) == (8, 32, 16)
    missing = httpx.get(f"{queen.url}/v1/artifacts/art_{'0' * 32}", timeout=5)
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "artifact_id"


def test_the_cli_writes_the_mp4_with_progress(queen: Daemon, tmp_path: Path) -> None:
    out = tmp_path / "bee.mp4"
    done = run_cli(queen.env, "video", "a bee", "-o", str(out), "--seconds", "1",
                   "--size", "32x32", "-m", MODEL, "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["state"], summary["frames"], summary["output"]) == ("done", 8, str(out))
    assert decode(out.read_bytes()) == (8, 32, 32)
    assert [p.name for p in tmp_path.iterdir()] == ["bee.mp4"]  # nothing half-written
    bad = run_cli(queen.env, "video", "x", "-o", str(tmp_path / "no.mp4"), "--size", "1x1",
                  "-m", MODEL)
    assert bad.returncode != 0 and "size" in bad.stderr
    assert not (tmp_path / "no.mp4").exists()


def test_ctrl_c_in_the_cli_cancels_the_video(queen: Daemon, tmp_path: Path) -> None:
    out = tmp_path / "never.mp4"
    cli = subprocess.Popen(
        [sys.executable, "-m", "rbee", "video", "slow", "-o", str(out), "--seconds", "1",
         "--size", "16x16", "-m", MODEL, "--steps", "100", "--json"],
        env=queen.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not any(j["state"] == "running" and j["request"].get("prompt") == "slow"
                  for j in httpx.get(f"{queen.url}/v1/jobs", timeout=5).json()["data"]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(3 * STEP_SECONDS)
    cli.send_signal(signal.SIGINT)
    stdout, _ = cli.communicate(timeout=30)
    assert cli.returncode == 130 and json.loads(stdout)["state"] == "cancelled"
    job = json.loads(stdout)["job_id"]
    assert httpx.get(f"{queen.url}/v1/jobs/{job}", timeout=5).json()["state"] == "cancelled"
    assert not out.exists()


def test_downloads_need_the_api_token_like_every_route(tmp_path: Path) -> None:
    env = rbee_env(tmp_path, RBEE_QUEEN_API_TOKEN="s3cret", RBEE_QUEEN_VIDEO_STEPS="2")
    for queen in running_queen(env):
        client = openai.OpenAI(base_url=f"{queen.url}/v1", api_key="s3cret", max_retries=0)
        video = client.videos.create_and_poll(model=MODEL, prompt="mine", seconds="1",
                                              size="16x16", poll_interval_ms=100)
        artifact = httpx.get(f"{queen.url}/v1/jobs/{video.id}", timeout=5,
                             headers={"Authorization": "Bearer s3cret"}).json()["result"]
        for path in (artifact["url"], f"/v1/videos/{video.id}/content"):
            assert httpx.get(f"{queen.url}{path}", timeout=5).status_code == 401
            with_token = httpx.get(f"{queen.url}{path}", timeout=5,
                                   headers={"Authorization": "Bearer s3cret"})
            assert with_token.status_code == 200 and decode(with_token.content)[0] == 8
