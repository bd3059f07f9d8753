"""The queen's image-edit form to a worker: the pictures' bytes as they were uploaded (no
base64), read from disk, and a worker reads that form into the edit."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import httpx
import pytest
from PIL import Image

from rbee.api.images import edit_request
from rbee.core.errors import InvalidRequest
from rbee.engines.fake_image import FakeImageMaker, colour
from rbee.queen.images import edit_body
from rbee.web.uploads import Form, Upload
from rbee.worker.app import create_app
from rbee.worker.runtime import Runtime


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _upload(tmp_path: Path, name: str, data: bytes) -> Upload:
    path = tmp_path / name
    path.write_bytes(data)
    return Upload(path, f"{name}.png", "image/png", len(data))


async def test_the_pictures_go_to_the_worker_as_files_not_base64(tmp_path: Path) -> None:
    image = _png(Image.new("RGB", (16, 16), (1, 2, 3)))
    mask_picture = Image.new("RGBA", (16, 16), (0, 0, 0, 255))
    mask_picture.putpixel((0, 0), (0, 0, 0, 0))
    mask = _png(mask_picture)
    # The mask first, as a client may send it: the worker's form is in a fixed order.
    form = Form(fields={"model": ["painter"], "prompt": ["x"], "n": ["1"],
                        "response_format": ["url"], "hive_id": ["h1"]},
                files={"mask": _upload(tmp_path, "mask", mask),
                       "image": _upload(tmp_path, "image", image)})
    body = edit_body(edit_request(form.fields), form)
    raw = b"".join([chunk async for chunk in body.chunks()])
    assert len(raw) == len(body)
    assert image in raw and mask in raw and raw.index(image) < raw.index(mask)
    for data in (image, mask):
        assert base64.b64encode(data)[:40] not in raw
    assert b'name="response_format"\r\n\r\nb64_json\r\n' in raw  # the worker stores nothing
    runtime = Runtime(FakeImageMaker())
    await runtime.load_engine()
    app = create_app(runtime, model="painter")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://w") as client:
        reply = await client.post("/v1/images/edits", content=raw,
                                  headers={"content-type": body.content_type})
    assert reply.status_code == 200, reply.text
    out = Image.open(io.BytesIO(base64.b64decode(reply.json()["data"][0]["b64_json"])))
    assert out.convert("RGB").getpixel((0, 0)) == tuple(colour("x", None, 0))  # painted
    assert out.convert("RGB").getpixel((5, 5)) == (1, 2, 3)  # kept


def test_an_edit_without_a_picture_or_with_an_empty_one_names_it(tmp_path: Path) -> None:
    fields = {"model": ["painter"], "prompt": ["x"]}
    with pytest.raises(InvalidRequest) as none:
        edit_body(edit_request(fields), Form(fields=fields))
    empty = Form(fields=fields, files={"image": _upload(tmp_path, "i", _png(
        Image.new("RGBA", (8, 8)))), "mask": _upload(tmp_path, "m", b"")})
    with pytest.raises(InvalidRequest) as blank:
        edit_body(edit_request(fields), empty)
    assert (none.value.param, blank.value.param) == ("image", "mask")


@pytest.mark.parametrize(("fields", "param"), [
    ({"n": ["two"]}, "n"), ({"stream": ["yes"]}, "stream"), ({"guidance_scale": ["x"]},
                                                             "guidance_scale"),
    ({"response_format": ["base64"]}, "response_format"), ({"prompt": [" "]}, "prompt"),
])
def test_bad_edit_fields_name_their_param(fields: dict[str, list[str]], param: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        edit_request({"model": ["painter"], "prompt": ["x"], **fields})
    assert err.value.param == param
