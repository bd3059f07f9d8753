"""A real diffusers pipeline (a tiny random Stable Diffusion built by the test) through a real
queen → hive → worker, with the official client: pictures that decode at the size and in the
format asked, n of them, the same seed the same picture, per-step progress, an edit on the
pipeline's inpainting twin that keeps the unmasked pixels, a hang-up that stops the pipeline
within a step, and what the worker itself refuses."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import psutil
import pytest
from PIL import Image

from tests.support.daemons import Daemon, rbee_env, running_queen
from tests.support.tiny_diffusion import tiny_pipeline  # noqa: F401  (a fixture)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def queen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    yield from running_queen(rbee_env(tmp_path_factory.mktemp("rbee"),
                                      RBEE_QUEEN_WORKER_THREADS="1"))


@pytest.fixture
def client(queen: Daemon) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{queen.url}/v1", api_key="unused", max_retries=0,
                         timeout=120)


@pytest.fixture
def model(tiny_pipeline: Path) -> str:  # noqa: F811
    return f"file:{tiny_pipeline}"


def _picture(b64: str | None) -> Image.Image:
    assert b64 is not None
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize(("fmt", "pil"), [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")])
def test_pictures_decode_at_the_size_and_format_asked(client: openai.OpenAI, model: str,
                                                      fmt: str, pil: str) -> None:
    result = client.images.generate(model=model, prompt="a red bee on a flower", n=2,
                                    size="64x48", output_format=fmt,  # type: ignore[arg-type]
                                    extra_body={"steps": 2, "seed": 7})
    assert result.data is not None and len(result.data) == 2
    images = [_picture(d.b64_json) for d in result.data]
    assert [(i.format, i.size) for i in images] == [(pil, (64, 48))] * 2
    assert result.output_format == fmt and result.size == "64x48"


def test_the_same_seed_paints_the_same_picture(client: openai.OpenAI, model: str) -> None:
    def paint(seed: int) -> bytes:
        result = client.images.generate(model=model, prompt="a hive", size="32x32",
                                        extra_body={"steps": 2, "seed": seed})
        assert result.data is not None
        return _picture(result.data[0].b64_json).tobytes()

    assert paint(1) == paint(1) != paint(2)


def test_auto_is_the_pipelines_own_size(client: openai.OpenAI, model: str) -> None:
    result = client.images.generate(model=model, prompt="a hive", extra_body={"steps": 1})
    assert result.data is not None and _picture(result.data[0].b64_json).size == (64, 64)


def test_progress_comes_at_every_step(client: openai.OpenAI, model: str) -> None:
    events = list(client.images.generate(model=model, prompt="a bee", size="32x32",
                                         stream=True, extra_body={"steps": 3}))
    kinds = [e.type for e in events]
    assert kinds == ["image_generation.progress"] * 3 + ["image_generation.completed"]
    assert [e.step for e in events[:3]] == [1, 2, 3]  # type: ignore[union-attr]
    assert _picture(events[-1].b64_json).size == (32, 32)  # type: ignore[union-attr]


def test_an_edit_repaints_only_the_transparent_part(client: openai.OpenAI, model: str) -> None:
    original = Image.effect_noise((64, 64), 60).convert("RGB")
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, 32, 64))  # paint the left half
    result = client.images.edit(model=model, image=("in.png", _png(original), "image/png"),
                                mask=("mask.png", _png(mask), "image/png"),
                                prompt="a green hive", extra_body={"steps": 2})
    assert result.data is not None
    out = _picture(result.data[0].b64_json).convert("RGB")
    assert out.size == (64, 64)
    assert out.crop((32, 0, 64, 64)).tobytes() == original.crop((32, 0, 64, 64)).tobytes()
    assert out.crop((0, 0, 32, 64)).tobytes() != original.crop((0, 0, 32, 64)).tobytes()


def test_an_edit_by_url_downloads_the_repainted_picture(client: openai.OpenAI,
                                                       model: str) -> None:
    original = Image.effect_noise((64, 64), 60).convert("RGB")
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, 32, 64))
    result = client.images.edit(model=model, image=("in.png", _png(original), "image/png"),
                                mask=("mask.png", _png(mask), "image/png"), prompt="a hive",
                                response_format="url", extra_body={"steps": 2})
    assert result.data is not None and result.data[0].url is not None
    with Image.open(io.BytesIO(httpx.get(result.data[0].url, timeout=10).content)) as out:
        kept = out.convert("RGB").crop((32, 0, 64, 64)).tobytes()
    assert kept == original.crop((32, 0, 64, 64)).tobytes()


def test_the_worker_refuses_a_bad_edit(client: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.images.edit(model=model, image=("in.png", _png(Image.new("RGB", (64, 64))),
                                               "image/png"),
                           mask=("m.png", _png(Image.new("RGBA", (64, 32))), "image/png"),
                           prompt="x")
    assert exc.value.response.json()["error"]["param"] == "mask"


def _worker_load(queen: Daemon) -> int:
    """The engine calls running in the image worker (its /health, as the hive sees it)."""
    import httpx

    workers = httpx.get(f"{queen.url}/v1/workers", timeout=5).json()
    url = next(w["url"] for w in workers if w["kind"] == "image")
    return int(httpx.get(f"{url}/health", timeout=5).json()["load"])


def test_a_hang_up_stops_the_pipeline_within_a_step(client: openai.OpenAI, model: str,
                                                     queen: Daemon) -> None:
    with client.images.with_streaming_response.generate(
            model=model, prompt="slow", size="64x64", stream=True,
            extra_body={"steps": 500}) as response:
        lines = response.iter_lines()
        assert "image_generation.progress" in next(line for line in lines if line)
        started = time.perf_counter()
    while _worker_load(queen) and time.perf_counter() - started < 10:
        time.sleep(0.05)
    # 500 steps take half a minute; one step of a 64 px picture well under a second.
    assert _worker_load(queen) == 0
    assert time.perf_counter() - started < 5


def test_the_worker_uses_little_memory(queen: Daemon, client: openai.OpenAI,
                                       model: str) -> None:
    """What models/estimate.py's DIFFUSERS_RUNTIME_BYTES is measured from (printed)."""
    client.images.generate(model=model, prompt="a bee", size="64x64", extra_body={"steps": 2})
    import httpx

    workers = httpx.get(f"{queen.url}/v1/workers", timeout=5).json()
    pid = next(w["pid"] for w in workers if w["kind"] == "image")
    rss = psutil.Process(pid).memory_info().rss
    print(f"image worker RSS {rss / 2**20:.0f} MiB")
    from rbee.models.catalog import parse_ref
    from rbee.models.estimate import estimate_ref

    assert rss < estimate_ref(parse_ref(model)).total_bytes
