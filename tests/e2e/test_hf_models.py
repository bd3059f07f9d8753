"""`hf:` models end to end: a real queen and hive download from a stand-in hub, a worker
serves the download through the OpenAI API, and a second worker reuses the hive's cache."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from rbee.client import QueenClient, StreamEvent
from tests.support.daemons import Daemon, rbee_env
from tests.support.hub import TINY_FILE, TINY_REPO, StandInHub
from tests.support.tiny_gguf import WORDS

pytestmark = pytest.mark.e2e

REPO, FILE = TINY_REPO, TINY_FILE
MODEL = f"hf:{REPO}:{FILE}"
DOWNLOADING = re.compile(r"^downloading \d+\.\d/\d+\.\d MB$")


@pytest.fixture
def hub(hub_root: Path) -> Iterator[StandInHub]:
    # ~0.8 s per download (8 pieces of 64 KiB, 0.1 s apart): long enough for the queen,
    # which polls the hive every 20 ms, to see the download in progress.
    with StandInHub(hub_root, chunk_delay=0.1) as running:
        yield running


@pytest.fixture
def env(tmp_path: Path, hub: StandInHub) -> dict[str, str]:
    """Overrides conftest's `env`: the `queen` fixture starts a queen whose hive uses `hub`."""
    return rbee_env(tmp_path, RBEE_QUEEN_HF_ENDPOINT=hub.url, RBEE_QUEEN_WORKER_THREADS="1")


@pytest.fixture
def client(queen: Daemon) -> Iterator[QueenClient]:
    c = QueenClient(queen.url)
    try:
        yield c
    finally:
        c.close()


def spawn(client: QueenClient) -> tuple[list[StreamEvent], dict[str, object]]:
    """Run a worker_spawn job for MODEL; (its events, the worker it reports)."""
    events = list(client.follow(client.submit("worker_spawn", model=MODEL)))
    assert events[-1].event == "done", events[-1]
    results = [e.data for e in events if e.event == "result"]
    assert len(results) == 1
    worker = results[0]["worker"]
    assert isinstance(worker, dict)
    return events, worker


def test_hf_model_downloads_with_progress_serves_chat_and_is_cached(
        queen: Daemon, client: QueenClient, hub: StandInHub, hub_root: Path,
        tmp_path: Path) -> None:
    # (a) the spawn job downloads from the hub, reporting progress, and ends with a worker
    events, worker = spawn(client)

    stages = [e.data["stage"] for e in events if e.event == "progress"]
    downloading = [s for s in stages if s.startswith("downloading")]
    assert downloading, f"no download progress among {stages}"
    assert all(DOWNLOADING.match(s) for s in downloading), downloading
    assert stages.index(downloading[0]) < stages.index("ready")
    fractions = [e.data["fraction"] for e in events if e.event == "progress"]
    assert fractions == sorted(fractions)
    assert worker["state"] == "ready"
    assert worker["model"] == MODEL
    assert worker["engine"] == "llama_cpp"
    path = Path(str(worker["model_path"]))
    assert path.is_relative_to(tmp_path / "hive")  # the hive's own model cache
    assert path.read_bytes() == (hub_root / REPO / FILE).read_bytes()
    assert hub.count("GET", REPO, FILE, status=200) == 1

    # (b) the OpenAI API serves the downloaded model: text from the tiny model's vocabulary
    with openai.OpenAI(base_url=f"{queen.url}/v1", api_key="anything", max_retries=0,
                       timeout=60) as oai:
        reply = oai.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hello bee"}], max_tokens=8,
            seed=1)
    text = reply.choices[0].message.content or ""
    assert reply.model == MODEL
    assert text.split(), f"no text in {reply}"
    assert set(text.split()) <= set(WORDS), text
    assert reply.usage is not None and reply.usage.completion_tokens > 0

    # (d) a second worker for the same model loads from the hive's cache: no second GET
    _, second = spawn(client)
    assert second["id"] != worker["id"]
    assert second["state"] == "ready"
    assert second["model_path"] == worker["model_path"]
    assert hub.count("GET", REPO, FILE) == 1
    assert hub.count("HEAD", REPO, FILE) == 2  # the hub was asked, the bytes were not fetched


def test_unknown_hf_repo_is_404_model_not_found(queen: Daemon, hub: StandInHub) -> None:
    # (c) the hive asks the hub, which has no such repo: an OpenAI 404 model_not_found
    body = {"model": "hf:tiny-org/nope:x.gguf", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(f"{queen.url}/v1/chat/completions", json=body, timeout=60)

    assert r.status_code == 404, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "model_not_found"
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "model"
    assert "hf:tiny-org/nope:x.gguf" in error["message"]
    assert hub.count("HEAD", "tiny-org/nope", "x.gguf", status=404) == 1
    assert hub.count("GET") == 0

    with (openai.OpenAI(base_url=f"{queen.url}/v1", api_key="anything", max_retries=0,
                        timeout=60) as oai,
          pytest.raises(openai.NotFoundError) as caught):
        oai.chat.completions.create(model="hf:tiny-org/nope:x.gguf",
                                    messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "model_not_found"
