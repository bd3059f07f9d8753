"""`hf:` model resolution against an in-process stand-in hub (real huggingface_hub client)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rbee.core.errors import ModelNotFound, UpstreamError
from rbee.hive.downloads import resolve
from rbee.models.catalog import parse_ref, require_kind
from tests.support.hub import TINY_FILE, TINY_REPO, StandInHub, commit_of, sha256_of

REPO, FILE = TINY_REPO, TINY_FILE
REF = parse_ref(f"hf:{REPO}:{FILE}")


@pytest.fixture
def hub(hub_root: Path) -> Iterator[StandInHub]:
    with StandInHub(hub_root) as running:
        yield running


def test_downloads_the_file_and_reports_byte_progress(
        hub: StandInHub, hub_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # huggingface_hub reports once per DOWNLOAD_CHUNK_SIZE (10 MB): shrink it to see steps.
    monkeypatch.setattr("huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    source = hub_root / REPO / FILE
    size = source.stat().st_size
    calls: list[tuple[int, int | None]] = []

    path = Path(resolve(REF, cache=tmp_path, hf_endpoint=hub.url,
                        progress=lambda done, total: calls.append((done, total))))

    assert path.is_file()
    assert path.read_bytes() == source.read_bytes()
    assert path.is_relative_to(tmp_path / "hf")
    assert commit_of(REPO) in path.parts  # a snapshot of the commit the hub named
    assert calls[0] == (0, size)  # reported as the body starts, before any byte arrives
    done = [d for d, _ in calls]
    assert done == sorted(set(done)), f"bytes must strictly increase: {done}"
    assert len(calls) >= size // (64 * 1024)
    assert {t for _, t in calls} == {size}
    assert calls[-1] == (size, size)
    assert hub.count("HEAD") == 1
    assert hub.count("GET") == 1


def test_second_resolve_uses_the_cache(hub: StandInHub, tmp_path: Path) -> None:
    first = resolve(REF, cache=tmp_path, hf_endpoint=hub.url)
    calls: list[tuple[int, int | None]] = []
    second = resolve(REF, cache=tmp_path, hf_endpoint=hub.url,
                     progress=lambda done, total: calls.append((done, total)))

    assert second == first
    assert hub.count("GET", REPO, FILE) == 1  # downloaded once
    assert hub.count("HEAD", REPO, FILE) == 2  # but still checked against the hub
    assert calls == []  # nothing downloaded, nothing reported


def test_cached_model_resolves_while_the_hub_is_down(hub: StandInHub, tmp_path: Path) -> None:
    first = resolve(REF, cache=tmp_path, hf_endpoint=hub.url)
    hub.stop()
    with pytest.raises(httpx.TransportError):
        httpx.head(f"{hub.url}/{REPO}/resolve/main/{FILE}", timeout=1)

    assert resolve(REF, cache=tmp_path, hf_endpoint=hub.url) == first


@pytest.mark.parametrize("ref", ["hf:tiny-org/nope:x.gguf", f"hf:{REPO}:missing.gguf"])
def test_missing_repo_or_file_is_model_not_found(hub: StandInHub, tmp_path: Path,
                                                 ref: str) -> None:
    with pytest.raises(ModelNotFound) as caught:
        resolve(parse_ref(ref), cache=tmp_path, hf_endpoint=hub.url)

    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"
    assert ref in caught.value.message
    assert hub.count("HEAD", status=404) == 1
    assert hub.count("GET") == 0


def test_an_endpoint_that_is_not_a_hub_is_an_upstream_error(hub: StandInHub,
                                                            tmp_path: Path) -> None:
    """A wrong HF_ENDPOINT (or a hub that is down) is not a missing model: 502, not 404."""
    hub.answer_as_hub = False

    with pytest.raises(UpstreamError) as caught:
        resolve(REF, cache=tmp_path, hf_endpoint=hub.url)

    assert not isinstance(caught.value, ModelNotFound)
    assert caught.value.http_status == 502
    assert REF.name in caught.value.message
    assert hub.count("GET") == 0
    assert not list((tmp_path / "hf").rglob(FILE))


def test_stand_in_hub_answers_like_the_hub(hub: StandInHub, hub_root: Path) -> None:
    source = (hub_root / REPO / FILE).read_bytes()
    url = f"{hub.url}/{REPO}/resolve/main/{FILE}"
    with httpx.Client(timeout=5) as http:
        head = http.head(url)
        ranged = http.get(url, headers={"Range": "bytes=100-"})
        missing = http.head(f"{hub.url}/{REPO}/resolve/main/nope.gguf")

    assert head.status_code == 200
    assert head.headers["X-Repo-Commit"] == commit_of(REPO)
    assert head.headers["ETag"] == f'"{sha256_of(hub_root / REPO / FILE)}"'
    assert int(head.headers["Content-Length"]) == len(source)
    assert ranged.status_code == 206
    assert ranged.content == source[100:]
    assert ranged.headers["Content-Range"] == f"bytes 100-{len(source) - 1}/{len(source)}"
    assert missing.status_code == 404
    assert missing.headers["X-Error-Code"] == "EntryNotFound"


def test_a_diffusers_repository_downloads_whole(hub: StandInHub, hub_root: Path,
                                                tmp_path: Path) -> None:
    """`hf:org/repo` (no file) is a pipeline: every file of the repository, as one folder."""
    repo = hub_root / "tiny-org" / "tiny-video"
    (repo / "unet").mkdir(parents=True)
    (repo / "model_index.json").write_text('{"_class_name": "AnimateDiffPipeline"}')
    (repo / "unet" / "config.json").write_text("{}")
    (repo / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"w" * 1000)
    ref = require_kind(parse_ref("hf:tiny-org/tiny-video"), "video")
    folder = Path(resolve(ref, cache=tmp_path, hf_endpoint=hub.url))
    assert (folder / "model_index.json").read_text() == (repo / "model_index.json").read_text()
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").stat().st_size == 1000
    assert commit_of("tiny-org/tiny-video") in folder.parts
    with pytest.raises(ModelNotFound):
        resolve(parse_ref("hf:tiny-org/no-such-pipeline"), cache=tmp_path,
                hf_endpoint=hub.url)


def test_a_pipeline_folder_needs_its_model_index(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match=r"model_index\.json"):
        resolve(parse_ref(f"file:{tmp_path}"), cache=tmp_path, hf_endpoint=None)
    (tmp_path / "model_index.json").write_text('{"_class_name": "AnimateDiffPipeline"}')
    video = require_kind(parse_ref(f"file:{tmp_path}"), "video")
    assert resolve(video, cache=tmp_path, hf_endpoint=None) == str(tmp_path)
