"""Image requests on the worker: the pictures made (or edited) and encoded as asked.

A whole answer is OpenAI's ImagesResponse. `stream: true` sends server-sent events instead:
rbee's `image_generation.progress` after every denoising step, OpenAI's
`image_generation.completed` with each image, then `[DONE]` (what the queen's job API reads
for per-step progress). The first step is awaited before a stream's headers, so a worker that
cannot paint still answers with a status the queen can act on.

Edits arrive as a multipart form (the queen's, re-sent from its disk, or a direct client's),
the pictures streamed to temp files (`web.uploads`), removed however the request ends; they
are checked here, where PIL is: a picture PIL cannot read or of an odd mode is a 400 naming
`image`, a mask without transparency or of another size one naming `mask`. A worker stores
nothing: `response_format` url is the queen's (it asks the worker for b64_json).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.responses import Response

from rbee.api import sse
from rbee.api.images import (
    MAX_SIDE,
    PROGRESS_EVENT,
    ImageData,
    ImageFormat,
    ImageRequest,
    ImagesResponse,
)
from rbee.core.errors import DeadlineExceeded, InvalidRequest, RbeeError
from rbee.engines.base import ImageJob, ImageStep, Picture
from rbee.web.streaming import DisconnectAwareStream
from rbee.worker.runtime import Runtime

# Modes a picture to edit may have (8 bits a channel): others (16-bit, float, CMYK) are
# refused rather than converted with a silent loss.
EDIT_MODES = frozenset({"RGB", "RGBA", "L", "LA", "P"})
_PIL_FORMATS: dict[ImageFormat, str] = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


def encode(picture: Picture, fmt: ImageFormat, compression: int | None) -> bytes:
    from PIL import Image

    image = Image.frombytes(picture.mode, (picture.width, picture.height), picture.pixels)
    out = io.BytesIO()
    if fmt == "png":
        image.save(out, "PNG")
    else:  # OpenAI's output_compression is a quality: 100 the best (its default)
        image.save(out, _PIL_FORMATS[fmt], quality=100 if compression is None else compression)
    return out.getvalue()


def job_of(body: ImageRequest, size: tuple[int, int] | None) -> ImageJob:
    return ImageJob(prompt=body.prompt, n=body.n, size=size, steps=body.steps, seed=body.seed,
                    negative_prompt=body.negative_prompt, guidance_scale=body.guidance_scale)


def check_stored_nowhere(body: ImageRequest) -> None:
    if body.response_format == "url":
        raise InvalidRequest("a worker stores no pictures: ask the queen for response_format "
                             "url, or ask here for b64_json", param="response_format")


def edit_job(runtime: Runtime, body: ImageRequest, image_path: Path | None,
             mask_path: Path | None, model: str) -> ImageJob:
    """The edit's pictures decoded and checked; a 400 naming what is wrong."""
    if not runtime.image_maker().can_edit:
        raise InvalidRequest(f"model {model} cannot edit images: diffusers has no inpainting "
                             "pipeline for it (use an inpainting-capable pipeline, e.g. "
                             "Stable Diffusion)", param="model")
    if image_path is None:
        raise InvalidRequest("an edit needs an image (a file field)", param="image")
    image = _decode(image_path, "image")
    if image.mode not in EDIT_MODES:
        raise InvalidRequest(f"image mode {image.mode} is not supported: send 8-bit RGB, RGBA "
                             "or greyscale", param="image")
    if image.width % 8 or image.height % 8:
        raise InvalidRequest(f"image is {image.width}x{image.height}: width and height must "
                             "be multiples of 8", param="image")
    if mask_path is not None:
        mask_image = _decode(mask_path, "mask")
        if mask_image.size != image.size:
            raise InvalidRequest(f"mask is {mask_image.width}x{mask_image.height}, the image "
                                 f"{image.width}x{image.height}: they must be the same size",
                                 param="mask")
        alpha = _alpha(mask_image, "mask")
    else:  # OpenAI: without a mask, the image's own transparent pixels are the mask
        alpha = _alpha(image, "mask")
    size = body.dimensions()
    if size is not None and size != image.size:
        raise InvalidRequest(f"size {body.size}: an edit keeps its image's size "
                             f"({image.width}x{image.height}); send auto", param="size")
    # Transparent (alpha 0) is where to paint: white in the engine's mask.
    mask = alpha.point(lambda a: 255 if a == 0 else 0)
    rgb = image.convert("RGB")
    return ImageJob(prompt=body.prompt, n=body.n, size=image.size, steps=body.steps,
                    seed=body.seed, negative_prompt=body.negative_prompt,
                    guidance_scale=body.guidance_scale,
                    image=Picture(rgb.width, rgb.height, rgb.tobytes()),
                    mask=Picture(mask.width, mask.height, mask.tobytes(), "L"))


def _decode(path: Path, param: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    if path.stat().st_size == 0:
        raise InvalidRequest(f"{param} is empty", param=param)
    try:
        with path.open("rb") as file:  # closed however the checks end
            image = Image.open(file)
            if image.format not in ("PNG", "JPEG", "WEBP"):
                raise InvalidRequest(f"{param} is {image.format}: send a PNG, JPEG or WebP",
                                     param=param)
            if max(image.size) > MAX_SIDE:  # from its header: a small file can unpack huge
                raise InvalidRequest(f"{param} is {image.width}x{image.height}; each side "
                                     f"must be at most {MAX_SIDE} pixels", param=param)
            image.load()  # decode now: a truncated file is a 400 here, not an engine error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as exc:
        raise InvalidRequest(f"{param} is not a picture PIL can read ({type(exc).__name__})",
                             param=param) from None
    return image


def _alpha(image: Any, param: str) -> Any:
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode not in ("RGBA", "LA"):
        raise InvalidRequest(f"the {param} needs an alpha channel (transparent where to "
                             f"edit); this one is {image.mode}", param=param)
    alpha = image.getchannel("A")
    lowest, _ = alpha.getextrema()
    if lowest != 0:
        raise InvalidRequest(f"the {param} has no fully transparent pixel: nothing to edit",
                             param=param)
    return alpha


async def _checked(items: AsyncIterator[ImageStep | Picture], until: float | None
                   ) -> AsyncIterator[ImageStep | Picture]:
    loop = asyncio.get_running_loop()
    try:
        async for item in items:
            if until is not None and loop.time() > until:
                raise DeadlineExceeded("the request's deadline passed while painting")
            yield item
    finally:  # also on a hang-up: the pipeline stops at its next step
        await items.aclose()  # type: ignore[attr-defined]


async def answer(runtime: Runtime, body: ImageRequest, job: ImageJob,
                 until: float | None) -> Response:
    """The whole ImagesResponse, or (stream) its events."""
    maker = runtime.image_maker()
    runtime.require_ready()
    size = job.size or maker.default_size()
    items = _checked(runtime.images(job), until)
    if body.stream:
        return await _stream(items, body, size, until)
    pictures: list[Picture] = []
    try:
        async with contextlib.aclosing(items), asyncio.timeout_at(until):  # type: ignore[type-var]
            async for item in items:
                if isinstance(item, Picture):
                    pictures.append(item)
    except TimeoutError:
        raise DeadlineExceeded("the request's deadline passed while painting") from None
    data = [ImageData(b64_json=base64.b64encode(
        encode(p, body.image_format(), body.output_compression)).decode()) for p in pictures]
    out = ImagesResponse(created=int(time.time()), data=data, output_format=body.image_format(),
                         size=f"{size[0]}x{size[1]}")
    return Response(out.model_dump_json(exclude_none=True), media_type="application/json")


async def _stream(items: AsyncIterator[ImageStep | Picture], body: ImageRequest,
                  size: tuple[int, int], until: float | None) -> Response:
    try:
        async with asyncio.timeout_at(until):
            first = await anext(items)
    except TimeoutError:
        await items.aclose()  # type: ignore[attr-defined]
        raise DeadlineExceeded("the request's deadline passed while painting") from None
    except StopAsyncIteration:  # cancelled before it began
        raise DeadlineExceeded("the request was cancelled before its first step") from None
    except BaseException:
        await items.aclose()  # type: ignore[attr-defined]
        raise
    return DisconnectAwareStream(_events(first, items, body, size))


async def _events(first: ImageStep | Picture, items: AsyncIterator[ImageStep | Picture],
                  body: ImageRequest, size: tuple[int, int]) -> AsyncIterator[bytes]:
    try:
        yield _event(first, body, size)
        async for item in items:
            yield _event(item, body, size)
    except RbeeError as exc:
        yield sse.data_frame(exc.to_envelope())
    finally:
        await items.aclose()  # type: ignore[attr-defined]
    yield sse.DONE


def _event(item: ImageStep | Picture, body: ImageRequest, size: tuple[int, int]) -> bytes:
    if isinstance(item, ImageStep):
        return sse.data_frame({"type": PROGRESS_EVENT, "image_index": item.index,
                               "step": item.step, "steps": item.steps})
    data = encode(item, body.image_format(), body.output_compression)
    return sse.data_frame({"type": "image_generation.completed",
                           "b64_json": base64.b64encode(data).decode(),
                           "created_at": int(time.time()), "size": f"{size[0]}x{size[1]}",
                           "quality": "auto", "background": "opaque",
                           "output_format": body.image_format()})
