"""/v1/images/generations and /v1/images/edits through the queen with the official client,
against real daemons (the fake image engine: a flat colour per prompt, steps that take time):
sizes, formats, n, per-step progress, edits that keep the unmasked pixels, kinds, and bad
input (each an OpenAI envelope naming its param)."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from rbee.client import QueenClient
from rbee.core.errors import InvalidRequest
from rbee.engines.fake_image import colour
from tests.support.daemons import Daemon, rbee_env, run_cli, running_queen

pytestmark = pytest.mark.e2e
MODEL = "rbee-fake-image"
STEP_SECONDS = 0.05


@pytest.fixture(scope="module")
def queen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    env = rbee_env(tmp_path_factory.mktemp("rbee"),
                   RBEE_WORKER_FAKE_STEP_SECONDS=str(STEP_SECONDS),
                   RBEE_QUEEN_IMAGES_MAX_UPLOAD_BYTES=str(64 * 1024))
    yield from running_queen(env)


@pytest.fixture
def client(queen: Daemon) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{queen.url}/v1", api_key="unused", max_retries=0)


def _picture(b64: str | None) -> Image.Image:
    assert b64 is not None
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _error(exc: pytest.ExceptionInfo[openai.APIStatusError]) -> dict[str, Any]:
    body = exc.value.response.json()
    assert set(body["error"]) >= {"message", "type", "param", "code"}
    return dict(body["error"])


@pytest.mark.parametrize(("fmt", "pil"), [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")])
def test_n_images_of_the_size_and_format_asked(client: openai.OpenAI, fmt: str,
                                               pil: str) -> None:
    result = client.images.generate(model=MODEL, prompt="a red bee", size="48x32", n=2,
                                    output_format=fmt,  # type: ignore[arg-type]
                                    response_format="b64_json")
    assert result.output_format == fmt and result.size == "48x32"
    assert result.data is not None and len(result.data) == 2
    images = [_picture(d.b64_json) for d in result.data]
    assert all(i.format == pil and i.size == (48, 32) for i in images)
    if fmt == "png":  # lossless: exactly the engine's colour, a different one per image
        assert [i.getpixel((5, 5)) for i in images] == [
            tuple(colour("a red bee", None, k)) for k in (0, 1)]


def test_auto_size_is_the_pipelines_default(client: openai.OpenAI) -> None:
    result = client.images.generate(model=MODEL, prompt="a hive")
    assert result.data is not None
    assert _picture(result.data[0].b64_json).size == (64, 64) and result.size == "64x64"


def test_stream_shows_every_denoising_step(client: openai.OpenAI) -> None:
    events = list(client.images.generate(model=MODEL, prompt="a hive", n=2, stream=True,
                                         extra_body={"steps": 3}))
    steps = [(e.image_index, e.step) for e in events  # type: ignore[union-attr]
             if e.type == "image_generation.progress"]  # type: ignore[comparison-overlap]
    assert steps == [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3)]
    done = [e for e in events if e.type == "image_generation.completed"]
    assert len(done) == 2 and _picture(done[0].b64_json).size == (64, 64)


def test_an_edit_keeps_the_unmasked_pixels(client: openai.OpenAI) -> None:
    original = Image.new("RGB", (64, 64), (10, 200, 30))
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, 32, 64))  # the left half transparent: paint there
    result = client.images.edit(model=MODEL, image=("in.png", _png(original), "image/png"),
                                mask=("mask.png", _png(mask), "image/png"), prompt="a cat")
    assert result.data is not None
    out = _picture(result.data[0].b64_json).convert("RGB")
    assert out.size == (64, 64)
    assert out.getpixel((48, 10)) == (10, 200, 30)  # kept
    assert out.getpixel((10, 10)) == tuple(colour("a cat", None, 0))  # painted


def test_an_edit_without_a_mask_paints_the_transparent_pixels(client: openai.OpenAI) -> None:
    original = Image.new("RGBA", (32, 32), (10, 200, 30, 255))
    original.putpixel((3, 3), (0, 0, 0, 0))
    result = client.images.edit(model=MODEL, image=("in.png", _png(original), "image/png"),
                                prompt="a dog")
    assert result.data is not None
    out = _picture(result.data[0].b64_json).convert("RGB")
    assert out.getpixel((3, 3)) == tuple(colour("a dog", None, 0))
    assert out.getpixel((4, 4)) == (10, 200, 30)


@pytest.mark.parametrize(("fields", "param"), [
    ({"n": 5}, "n"),  # the queen's images_max_n is 4
    ({"size": "100x100"}, "size"),  # not multiples of 8
    ({"size": "big"}, "size"),
    ({"size": "8192x8192"}, "size"),  # over images_max_side
    ({"output_format": "gif"}, "output_format"),
    ({"response_format": "url", "stream": True}, "response_format"),  # url is not streamed
    ({"response_format": "base64"}, "response_format"),
    ({"prompt": "  "}, "prompt"),
    ({"quality": "hd"}, "quality"),
    ({"extra_body": {"steps": 0}}, "steps"),
])
def test_bad_generation_fields_name_their_param(client: openai.OpenAI, fields: dict[str, Any],
                                                param: str) -> None:
    args: dict[str, Any] = {"model": MODEL, "prompt": "a bee", **fields}
    with pytest.raises(openai.BadRequestError) as exc:
        client.images.generate(**args)
    assert _error(exc)["param"] == param


def test_url_pictures_download_from_the_queen(client: openai.OpenAI, queen: Daemon) -> None:
    result = client.images.generate(model=MODEL, prompt="a bee", size="24x16", n=2,
                                    response_format="url", output_format="webp")
    assert result.data is not None and all(d.b64_json is None for d in result.data)
    urls = [d.url for d in result.data]
    assert all(u is not None and u.startswith(f"{queen.url}/v1/artifacts/art_") for u in urls)
    for url in urls:
        assert url is not None
        reply = httpx.get(url, timeout=5)
        assert reply.headers["content-type"] == "image/webp"
        with Image.open(io.BytesIO(reply.content)) as picture:
            assert (picture.format, picture.size) == ("WEBP", (24, 16))
    edited = client.images.edit(model=MODEL, image=("in.png", _png(Image.new("RGBA", (16, 16))),
                                                    "image/png"), prompt="x",
                                response_format="url")
    assert edited.data is not None and edited.data[0].url is not None
    with Image.open(io.BytesIO(httpx.get(edited.data[0].url, timeout=5).content)) as picture:
        assert picture.size == (16, 16)


def test_kinds_are_kept_apart(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.images.generate(model="rbee-fake", prompt="a bee")
    assert _error(exc)["code"] == "wrong_model_kind"
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user",
                                                              "content": "hi"}])
    assert "image model" in _error(exc)["message"]
    assert {m.id: m.kind for m in client.models.list()}[MODEL] == "image"  # type: ignore[attr-defined]


def _edit(client: openai.OpenAI, image: bytes, mask: bytes | None = None) -> dict[str, Any]:
    with pytest.raises(openai.APIStatusError) as exc:
        client.images.edit(model=MODEL, image=("in.png", image, "image/png"), prompt="x",
                           **({"mask": ("m.png", mask, "image/png")} if mask else {}))
    return _error(exc) | {"status": exc.value.status_code}


def test_bad_edits_name_their_param(client: openai.OpenAI) -> None:
    rgb = _png(Image.new("RGB", (64, 64)))
    small_mask = _png(Image.new("RGBA", (32, 32)))
    assert _edit(client, rgb, small_mask)["param"] == "mask"  # another size
    assert _edit(client, rgb, rgb)["param"] == "mask"  # no alpha channel
    assert _edit(client, rgb)["param"] == "mask"  # no mask, no transparency
    assert _edit(client, b"\x89PNG\r\n\x1a\n not really")["param"] == "image"
    deep = _png(Image.new("I;16", (64, 64)))
    assert _edit(client, deep, _png(Image.new("RGBA", (64, 64))))["param"] == "image"
    huge = _edit(client, b"\0" * (64 * 1024 + 1))  # over images_max_upload_bytes
    assert (huge["status"], huge["param"]) == (413, "image")


def test_an_edit_must_be_a_form(queen: Daemon) -> None:
    reply = httpx.post(f"{queen.url}/v1/images/edits", json={"model": MODEL, "prompt": "x"})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "Content-Type"


def test_a_hang_up_stops_the_engine_at_its_next_step(client: openai.OpenAI) -> None:
    # 400 steps of 50 ms would hold the (one-slot) worker for 20 s.
    with client.images.with_streaming_response.generate(
            model=MODEL, prompt="slow", stream=True, extra_body={"steps": 400}) as response:
        next(response.iter_lines())
    started = time.perf_counter()
    result = client.images.generate(model=MODEL, prompt="next", extra_body={"steps": 1})
    assert result.data is not None
    assert time.perf_counter() - started < 5


def test_the_cli_paints_into_files_with_progress(queen: Daemon, tmp_path: Path) -> None:
    env = queen.env
    out = tmp_path / "bee.webp"
    r = run_cli(env, "image", "a red bee", "-o", str(out), "-m", MODEL, "--size", "32x16",
                "--n", "2", "--steps", "3", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["format"] == "webp" and summary["steps"] == 6  # 3 for each picture
    assert [i["output"] for i in summary["images"]] == [str(out), str(tmp_path / "bee-2.webp")]
    for path in (out, tmp_path / "bee-2.webp"):
        with Image.open(path) as picture:
            assert (picture.format, picture.size) == ("WEBP", (32, 16))
    human = run_cli(env, "image", "a hive", "-o", str(tmp_path / "hive.png"), "-m", MODEL)
    assert human.returncode == 0 and "wrote" in human.stderr
    bad = run_cli(env, "image", "x", "-o", str(tmp_path / "no.png"), "-m", MODEL, "--size",
                  "7x7")
    assert bad.returncode != 0 and "multiples of 8" in bad.stderr
    wrong = run_cli(env, "image", "x", "-o", str(tmp_path / "no.png"), "-m", "rbee-fake")
    assert wrong.returncode != 0 and "chat model" in wrong.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bee-2.webp", "bee.webp",
                                                          "hive.png"]


def test_an_image_job_shows_every_denoising_step(queen: Daemon) -> None:
    with QueenClient(queen.url) as client:
        job = client.submit("image", model=MODEL, prompt="a bee", size="16x16", n=2, steps=3)
        events = list(client.follow(job))
        with pytest.raises(InvalidRequest, match="multiples of 8"):
            client.submit("image", model=MODEL, prompt="a bee", size="9x9")
    steps = [(e.data["image"], e.data["step"], e.data["fraction"]) for e in events
             if e.event == "progress" and e.data["stage"] == "denoising"]
    assert steps == [(0, 1, 0.1667), (0, 2, 0.3333), (0, 3, 0.5),
                     (1, 1, 0.6667), (1, 2, 0.8333), (1, 3, 1.0)]
    [result] = [e.data for e in events if e.event == "result"]
    assert result["steps"] == 6
    # The pictures are artifacts the job names: nothing base64 on its stream.
    assert all("b64_json" not in e.data for e in events)
    for image in result["images"]:
        assert image["url"] == f"/v1/artifacts/{image['artifact_id']}"
        reply = httpx.get(f"{queen.url}{image['url']}", timeout=5)
        assert reply.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(reply.content)) as picture:
            assert picture.size == (16, 16) and len(reply.content) == image["bytes"]



def _form(queen: Daemon, files: dict[str, Any], data: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{queen.url}/v1/images/edits", files=files,
                      data={"model": MODEL, "prompt": "x"} | data, timeout=30)


def test_hostile_edit_forms_name_their_param(queen: Daemon) -> None:
    png = _png(Image.new("RGBA", (16, 16)))
    cases = [
        (_form(queen, {"image": ("a.png", png)}, {"n": "many"}), "n"),
        (_form(queen, {"image": ("a.png", png)}, {"stream": "yes"}), "stream"),
        (_form(queen, {"image": ("a.png", png), "photo": ("b.png", png)}, {}), "photo"),
        (_form(queen, {"image[]": ("a.png", png), "image": ("b.png", png)}, {}), "image"),
        (_form(queen, {"mask": ("m.png", png)}, {"image": "not a file"}), "image"),
        (_form(queen, {"image": ("a.png", b"")}, {}), "image"),
        (_form(queen, {"image": ("a.png", png)}, {"size": "32x32"}), "size"),  # not its size
    ]
    for reply, param in cases:
        assert reply.status_code == 400, (param, reply.text)
        assert reply.json()["error"]["param"] == param, reply.text
    # a field over the parser's bound (a prompt is at most 32,000 characters)
    long = _form(queen, {"image": ("a.png", png)}, {"prompt": "x" * 100_000})
    assert long.status_code == 400 and long.json()["error"]["param"] == "prompt"
    assert "longer than" in long.json()["error"]["message"]


def test_a_huge_edit_upload_is_a_413_and_leaves_nothing_on_disk(queen: Daemon) -> None:
    uploads = Path(queen.env["RBEE_QUEEN_STATE_DIR"]) / "uploads"

    def huge() -> Iterator[bytes]:  # 10 MiB streamed with no length: refused as it comes
        boundary = b"--b\r\n"
        yield boundary + b'Content-Disposition: form-data; name="model"\r\n\r\n'
        yield MODEL.encode() + b"\r\n" + boundary
        yield b'Content-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
        for _ in range(160):
            yield b"\0" * 65536

    reply = httpx.post(f"{queen.url}/v1/images/edits", content=huge(), timeout=30,
                       headers={"content-type": "multipart/form-data; boundary=b"})
    assert reply.status_code == 413 and reply.json()["error"]["param"] == "image"
    mask = _form(queen, {"image": ("a.png", _png(Image.new("RGBA", (8, 8)))),
                         "mask": ("m.png", b"\0" * (64 * 1024 + 1))}, {})
    assert mask.status_code == 413 and mask.json()["error"]["param"] == "mask"
    assert not uploads.exists() or list(uploads.iterdir()) == []


def test_the_clients_deadline_stops_the_worker(client: openai.OpenAI, queen: Daemon) -> None:
    started = time.perf_counter()
    with pytest.raises(openai.APIStatusError) as exc:
        client.images.generate(model=MODEL, prompt="slow", extra_body={"steps": 400},
                               extra_headers={"X-Request-Timeout": "0.5"})
    assert exc.value.status_code == 504
    assert time.perf_counter() - started < 5
    result = client.images.generate(model=MODEL, prompt="next", extra_body={"steps": 1})
    assert result.data is not None and time.perf_counter() - started < 8


def test_url_pictures_are_their_tenants_and_go_with_retention(tmp_path: Path) -> None:
    boot = "bootstrap-s3cret-for-the-image-url-test"
    env = rbee_env(tmp_path, RBEE_QUEEN_API_TOKEN=boot, RBEE_QUEEN_ARTIFACT_RETENTION="3")
    admin = {**env, "RBEE_API_TOKEN": boot}
    for queen in running_queen(env):
        keys = []
        for tenant in ("acme", "globex"):
            assert run_cli(admin, "tenant", "create", tenant).returncode == 0
            made = run_cli(admin, "--json", "user", "create", tenant, "ann")
            user_id = json.loads(made.stdout)[0]["id"]
            keys.append(run_cli(admin, "key", "create", user_id).stdout.strip())
        acme = openai.OpenAI(base_url=f"{queen.url}/v1", api_key=keys[0], max_retries=0)
        result = acme.images.generate(model=MODEL, prompt="a bee", response_format="url")
        assert result.data is not None and result.data[0].url is not None
        url = result.data[0].url

        def get(key: str, url: str = url) -> httpx.Response:
            return httpx.get(url, timeout=5, headers={"Authorization": f"Bearer {key}"})

        with Image.open(io.BytesIO(get(keys[0]).content)) as picture:
            assert picture.size == (64, 64)
        other = get(keys[1])  # another tenant's picture is one that does not exist
        assert other.status_code == 404 and other.json()["error"]["param"] == "artifact_id"
        assert other.json()["error"]["code"] == "artifact_not_found"  # as if there were none
        assert get(boot).status_code == 200  # the admin sees every tenant's
        deadline = time.monotonic() + 10
        while get(keys[0]).status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        gone = get(keys[0])  # past its retention: purged
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "artifact_not_found"
