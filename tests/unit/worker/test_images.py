"""The worker's image routes on the fake engine: pictures encoded as asked, edits checked
where PIL is (masks as a palette or grey+alpha picture, modes, sizes), a model that cannot
edit, and a worker of another kind saying what it does."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from rbee.engines.fake import FakeEngine
from rbee.engines.fake_image import FakeImageMaker, colour
from rbee.worker.app import create_app
from rbee.worker.runtime import Runtime
from rbee.worker.transcription import Limits


async def _client(engine: FakeImageMaker | FakeEngine) -> httpx.AsyncClient:
    runtime = Runtime(engine)
    await runtime.load_engine()
    app = create_app(runtime, model="painter")
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w")


def _bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def _edit(image: Image.Image | bytes, mask: Image.Image | None = None,
          **extra: str) -> dict[str, Any]:
    """An edit as the queen sends it: a multipart form, the pictures as files."""
    files = {"image": ("i.png", image if isinstance(image, bytes) else _bytes(image))}
    if mask is not None:
        files["mask"] = ("m.png", _bytes(mask))
    return {"files": files, "data": {"model": "painter", "prompt": "x", **extra}}


def _decoded(reply: httpx.Response) -> Image.Image:
    assert reply.status_code == 200, reply.text
    return Image.open(io.BytesIO(base64.b64decode(reply.json()["data"][0]["b64_json"])))


async def test_jpeg_with_a_quality() -> None:
    async with await _client(FakeImageMaker()) as client:
        reply = await client.post("/v1/images/generations", json={
            "model": "painter", "prompt": "a bee", "size": "24x16", "output_format": "jpeg",
            "output_compression": 50})
    picture = _decoded(reply)
    assert (picture.format, picture.size) == ("JPEG", (24, 16))
    assert reply.json()["output_format"] == "jpeg" and reply.json()["size"] == "24x16"


async def test_masks_as_palette_or_grey_alpha_pictures() -> None:
    original = Image.new("RGB", (16, 16), (1, 2, 3))
    grey = Image.new("LA", (16, 16), (0, 255))
    grey.putpixel((0, 0), (0, 0))
    palette = Image.new("P", (16, 16), 1)
    palette.putpixel((0, 0), 0)
    palette.info["transparency"] = 0
    async with await _client(FakeImageMaker()) as client:
        for mask in (grey, palette):
            out = _decoded(await client.post("/v1/images/edits", **_edit(original, mask)))
            assert out.convert("RGB").getpixel((0, 0)) == tuple(colour("x", None, 0))
            assert out.convert("RGB").getpixel((1, 1)) == (1, 2, 3)


async def test_edits_refused_with_their_param() -> None:
    rgba = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    async with await _client(FakeImageMaker()) as client:
        odd = await client.post("/v1/images/edits", **_edit(Image.new("RGBA", (12, 12))))
        cmyk = await client.post("/v1/images/edits", **_edit(
            _bytes(Image.new("CMYK", (16, 16)), "JPEG"), rgba))
        gif = await client.post("/v1/images/edits", **_edit(_bytes(rgba.convert("RGB"), "GIF")))
        opaque = await client.post("/v1/images/edits", **_edit(
            rgba, Image.new("RGBA", (16, 16), (0, 0, 0, 255))))
        garbage = await client.post("/v1/images/edits", **_edit(b"%%"))
        # a few kB of PNG that would unpack to 8192 x 8192 pixels
        huge = await client.post("/v1/images/edits", **_edit(Image.new("L", (8192, 8192))))
        url = await client.post("/v1/images/edits", **_edit(rgba, response_format="url"))
    assert [r.json()["error"]["param"] for r in (odd, cmyk, gif, opaque, garbage, huge, url)
            ] == ["image", "image", "image", "mask", "image", "image", "response_format"]
    assert "at most 4096 pixels" in huge.text
    assert "mode CMYK" in cmyk.text and "GIF" in gif.text
    assert "no fully transparent pixel" in opaque.text


async def test_a_model_that_cannot_edit_says_so() -> None:
    engine = FakeImageMaker()
    engine.can_edit = False
    async with await _client(engine) as client:
        reply = await client.post("/v1/images/edits", **_edit(Image.new("RGBA", (8, 8))))
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "model"
    assert "cannot edit" in reply.text


async def test_a_chat_worker_paints_nothing() -> None:
    async with await _client(FakeEngine()) as client:
        reply = await client.post("/v1/images/generations",
                                  json={"model": "painter", "prompt": "a bee"})
    assert reply.status_code == 400
    assert "chat model; it makes no images" in reply.json()["error"]["message"]


async def test_an_edit_upload_is_bounded_and_leaves_no_file(tmp_path: Path) -> None:
    """Edits stream to disk under the worker's upload bound (no 16 MiB JSON body any more);
    the JSON routes keep the normal body limit."""
    runtime = Runtime(FakeImageMaker())
    await runtime.load_engine()
    app = create_app(runtime, model="painter", uploads=Limits(tmp_path, 1024 * 1024))
    rgba = Image.new("RGBA", (8, 8))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://w") as client:
        ok = await client.post("/v1/images/edits", **_edit(rgba))
        over = await client.post("/v1/images/edits", **_edit(b"\0" * (1024 * 1024 + 1)))
        json_over = await client.post("/v1/images/generations", json={
            "model": "painter", "prompt": "x" * (9 * 1024 * 1024)})
    assert ok.status_code == 200, ok.text
    assert over.status_code == 413 and over.json()["error"]["param"] == "image"
    assert json_over.status_code == 413
    assert not any(tmp_path.iterdir())  # noqa: ASYNC240 (a test's own temp folder)
