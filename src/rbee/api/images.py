"""OpenAI's image requests (POST /v1/images/generations and /v1/images/edits) and answer.

Every check is a 400 naming its field: `prompt` (empty or too long), `n` (1 to the queen's
`images_max_n`), `size` ("auto" or WIDTHxHEIGHT, multiples of 8, each side at most the queen's
`images_max_side`), `output_format` (png, jpeg, webp), `response_format` (b64_json, or url
on the queen: the pictures stored as artifacts; url is not streamed), and OpenAI fields no
diffusers pipeline honours (`quality` other than auto/standard, `background` transparent,
`style`, `partial_images`).

rbee's own fields (extra body): `steps` (denoising steps; the pipeline's default otherwise),
`seed` (the same seed and prompt give the same image), `negative_prompt`, `guidance_scale`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rbee.api.openai import ModelName
from rbee.core.errors import InvalidRequest
from rbee.web.body import describe_errors

MAX_PROMPT_CHARS = 32_000  # OpenAI's limit for gpt-image-1
MAX_N = 10  # OpenAI's bound; the queen's setting (images_max_n) is usually lower
MAX_SIDE = 4096  # a hard bound on either side, whatever the settings say
MAX_STEPS = 500
ImageFormat = Literal["png", "jpeg", "webp"]
IMAGE_FORMATS: tuple[ImageFormat, ...] = ("png", "jpeg", "webp")
MEDIA_TYPES: dict[ImageFormat, str] = {"png": "image/png", "jpeg": "image/jpeg",
                                       "webp": "image/webp"}
_SIZE = re.compile(r"^([1-9][0-9]{0,4})x([1-9][0-9]{0,4})$")
# The rbee event on an image stream before each denoising step's end (not OpenAI's: its
# SDK passes an unknown event type through as it came).
PROGRESS_EVENT = "image_generation.progress"
EDIT_FILES = ("image", "mask")  # an edit form's file fields
# Numbers and flags a form sends as text, typed as the JSON endpoint takes them.
_INTS = ("n", "output_compression", "partial_images", "steps", "seed")
_FLOATS = ("guidance_scale",)
_BOOLS = ("stream",)


def parse_size(size: str, max_side: int = MAX_SIDE) -> tuple[int, int] | None:
    """(width, height) of "WIDTHxHEIGHT", or None for "auto"; a 400 naming size otherwise."""
    if size == "auto":
        return None
    match = _SIZE.match(size)
    if match is None:
        raise InvalidRequest(f"size {size[:32]!r} is not 'auto' or WIDTHxHEIGHT (e.g. "
                             "512x512)", param="size")
    width, height = int(match[1]), int(match[2])
    if width % 8 or height % 8:
        raise InvalidRequest(f"size {size}: width and height must be multiples of 8 (the "
                             "pipeline's latents are 1/8 of the image)", param="size")
    if not (8 <= width <= max_side and 8 <= height <= max_side):
        raise InvalidRequest(f"size {size}: each side must be 8 to {max_side} pixels",
                             param="size")
    return width, height


class ImageRequest(BaseModel):
    """The fields generations and edits share (an edit's come as a form's text fields:
    `edit_request`; its pictures are the form's files, streamed to disk at each hop)."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: ModelName = Field(min_length=1, max_length=512)
    prompt: str = Field(description=f"what to draw, 1 to {MAX_PROMPT_CHARS} characters")
    n: int = Field(default=1, description=f"images to make, 1 to {MAX_N} (the queen's "
                   "images_max_n may be lower)")
    size: str = Field(default="auto", max_length=32, description="'auto' (the pipeline's "
                      "default) or WIDTHxHEIGHT, multiples of 8")
    response_format: str = Field(default="b64_json", description="b64_json, or url (the "
                                 "queen stores the pictures as artifacts)")
    output_format: str = Field(default="png", description="png, jpeg or webp")
    output_compression: int | None = Field(default=None, description="0-100: jpeg/webp "
                                           "quality (100 best)")
    quality: str | None = Field(default=None, max_length=16)
    background: str | None = Field(default=None, max_length=16)
    style: str | None = Field(default=None, max_length=16)
    stream: bool = Field(default=False, description="per-step progress events, then each "
                         "image (server-sent events)")
    partial_images: int | None = None
    user: str | None = Field(default=None, max_length=256)
    # rbee's own
    steps: int | None = Field(default=None, description=f"denoising steps, 1 to {MAX_STEPS}")
    seed: int | None = Field(default=None, ge=0, lt=2**63)
    negative_prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    guidance_scale: float | None = Field(default=None, ge=0, le=100)

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        if len(value) > MAX_PROMPT_CHARS:
            raise ValueError(f"is {len(value)} characters; at most {MAX_PROMPT_CHARS}")
        return value

    @field_validator("n")
    @classmethod
    def _n(cls, value: int) -> int:
        if not 1 <= value <= MAX_N:
            raise ValueError(f"must be 1 to {MAX_N}")
        return value

    @field_validator("size")
    @classmethod
    def _size(cls, value: str) -> str:
        parse_size(value)
        return value

    @field_validator("response_format")
    @classmethod
    def _response_format(cls, value: str) -> str:
        if value not in ("b64_json", "url"):
            raise ValueError(f"{value[:32]!r} is not b64_json or url")
        return value

    @field_validator("output_format")
    @classmethod
    def _output_format(cls, value: str) -> str:
        if value not in IMAGE_FORMATS:
            raise ValueError(f"{value[:32]!r} is not one of {', '.join(IMAGE_FORMATS)}")
        return value

    @field_validator("output_compression")
    @classmethod
    def _compression(cls, value: int | None) -> int | None:
        if value is not None and not 0 <= value <= 100:
            raise ValueError("must be 0 to 100")
        return value

    @field_validator("quality")
    @classmethod
    def _quality(cls, value: str | None) -> str | None:
        if value not in (None, "auto", "standard"):
            raise ValueError("only auto or standard: the pipeline's steps are its quality "
                             "(set rbee's `steps` for more or fewer)")
        return value

    @field_validator("background")
    @classmethod
    def _background(cls, value: str | None) -> str | None:
        if value not in (None, "auto", "opaque"):
            raise ValueError("only auto or opaque: diffusers pipelines paint every pixel")
        return value

    @field_validator("style")
    @classmethod
    def _style(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError("is not supported (a DALL-E 3 field): describe the style in "
                             "the prompt")
        return value

    @field_validator("partial_images")
    @classmethod
    def _partial(cls, value: int | None) -> int | None:
        if value not in (None, 0):
            raise ValueError("partial images are not made; stream=true sends per-step "
                             "progress instead")
        return value

    @field_validator("steps")
    @classmethod
    def _steps(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= MAX_STEPS:
            raise ValueError(f"must be 1 to {MAX_STEPS}")
        return value

    def image_format(self) -> ImageFormat:
        return self.output_format  # type: ignore[return-value]  # checked by _output_format

    def dimensions(self) -> tuple[int, int] | None:
        return parse_size(self.size)

    def check_limits(self, max_n: int, max_side: int) -> None:
        """The deployment's own bounds (queen settings), tighter than OpenAI's."""
        if self.n > max_n:
            raise InvalidRequest(f"n is {self.n}; this server makes at most {max_n} images "
                                 "per request", param="n")
        parse_size(self.size, max_side)
        if self.stream and self.response_format == "url":
            raise InvalidRequest("response_format url is not streamed: a stream's pictures "
                                 "come base64 in its events", param="response_format")


def edit_request(fields: Mapping[str, Sequence[str]]) -> ImageRequest:
    """An edit form's text fields (each one's last value) as the request, numbers and flags
    typed; a 400 naming what is wrong. The pictures are the form's files (EDIT_FILES)."""
    values = {name: _typed(name, items[-1]) for name, items in fields.items()}
    try:
        return ImageRequest.model_validate(values)
    except ValidationError as exc:
        message, param = describe_errors(exc.errors(include_url=False))
        raise InvalidRequest(message, param=param) from None


def edit_form(body: ImageRequest) -> list[tuple[str, str]]:
    """The checked request as form fields again (the queen's form to a worker): what was set,
    rbee's hints included (a worker ignores them); `response_format` always b64_json: a
    worker stores nothing, the queen turns its answer into URLs."""
    values = {**body.model_dump(exclude_unset=True), "response_format": "b64_json"}
    return [(name, _text(value)) for name, value in values.items() if value is not None]


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _typed(name: str, value: str) -> Any:
    try:
        if name in _INTS:
            return int(value)
        if name in _FLOATS:
            return float(value)
    except ValueError:
        raise InvalidRequest(f"{name} must be a number, got {value[:32]!r}",
                             param=name) from None
    if name in _BOOLS:
        if value not in ("true", "false"):
            raise InvalidRequest(f"{name} must be true or false", param=name)
        return value == "true"
    return value


class ImageData(BaseModel):
    b64_json: str | None = None
    url: str | None = None  # the queen's download URL, for response_format url
    revised_prompt: str | None = None


class ImagesResponse(BaseModel):
    """OpenAI's ImagesResponse."""

    created: int
    data: list[ImageData]
    output_format: ImageFormat
    size: str
    quality: str = "auto"
    background: str = "opaque"
    usage: dict[str, Any] | None = None
