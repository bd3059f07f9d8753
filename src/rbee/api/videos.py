"""OpenAI's Videos API (POST/GET/DELETE /v1/videos…) and the worker's video protocol.

The public shapes follow the `openai` SDK's `Video`, `VideoDeleteResponse` and the cursor
page of `videos.list`. Checks that need no settings are here (each a 400 naming its field);
the bounds (largest size, longest clip) are the queen's settings (`queen/videos.py`).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rbee.api.openai import ModelName

MAX_PROMPT_CHARS = 32_000
# OpenAI's values (sora's): accepted as they are, and so is any other WxH / whole number of
# seconds within the queen's bounds.
OPENAI_SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")
OPENAI_SECONDS = ("4", "8", "12")
DEFAULT_MODEL = "sora-2"  # what the SDK means when it names none: the queen's default video
_SIZE = re.compile(r"^([1-9][0-9]{0,4})x([1-9][0-9]{0,4})$")
_SECONDS = re.compile(r"^[1-9][0-9]{0,3}$")
MP4 = "video/mp4"


class VideoCreateRequest(BaseModel):
    """The body of POST /v1/videos (JSON, or the multipart form the SDK sends)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: str = Field(max_length=MAX_PROMPT_CHARS)
    model: ModelName = Field(default="", max_length=512)
    seconds: str = Field(default="4", description="whole seconds, e.g. OpenAI's 4, 8 or 12")
    size: str = Field(default="720x1280", description="WIDTHxHEIGHT, e.g. OpenAI's 720x1280")
    # rbee's own fields (the SDK's extra_body): how many denoising steps, which seed.
    steps: int | None = Field(default=None, ge=1, le=500)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    negative_prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    input_reference: Any = None

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("seconds", mode="before")
    @classmethod
    def _seconds(cls, value: object) -> object:
        if type(value) is int:  # the SDK's type is a string; a JSON client may send 4
            value = str(value)
        if isinstance(value, str) and not _SECONDS.match(value):
            raise ValueError(f"{value[:20]!r} is not a whole number of seconds (OpenAI's "
                             f"values: {', '.join(OPENAI_SECONDS)})")
        return value

    @field_validator("size")
    @classmethod
    def _size(cls, value: str) -> str:
        if not _SIZE.match(value):
            raise ValueError(f"{value[:20]!r} is not WIDTHxHEIGHT (OpenAI's values: "
                             f"{', '.join(OPENAI_SIZES)})")
        return value

    @field_validator("input_reference")
    @classmethod
    def _reference(cls, value: object) -> object:
        if value is not None:
            raise ValueError("is not supported: rbee's video models make videos from text "
                             "only (leave it out)")
        return value

    def dimensions(self) -> tuple[int, int]:
        width, _, height = self.size.partition("x")
        return int(width), int(height)


class VideoError(BaseModel):
    code: str
    message: str
    param: str | None = None
    type: str | None = None


class Video(BaseModel):
    id: str
    object: Literal["video"] = "video"
    model: str
    status: Literal["queued", "in_progress", "completed", "failed"]
    progress: int = Field(ge=0, le=100)
    created_at: int
    completed_at: int | None = None
    expires_at: int | None = None
    prompt: str | None = None
    seconds: str
    size: str
    remixed_from_video_id: str | None = None
    error: VideoError | None = None


class VideoList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Video]
    first_id: str | None
    last_id: str | None
    has_more: bool


class VideoDeleted(BaseModel):
    id: str
    object: Literal["video.deleted"] = "video.deleted"
    deleted: bool = True


# --- queen → worker ---------------------------------------------------------------------

class VideoGeneration(BaseModel):
    """POST /v1/videos/generations on a worker. Its answer is an SSE stream: a
    `video.progress` frame per denoising step, then one `video.file` frame naming the MP4 the
    worker holds for the queen to fetch (POST /v1/videos/files), then `[DONE]`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    width: int = Field(ge=8, le=8192, multiple_of=8)
    height: int = Field(ge=8, le=8192, multiple_of=8)
    frames: int = Field(ge=1, le=10_000)
    fps: int = Field(ge=1, le=120)
    steps: int = Field(ge=1, le=500)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    negative_prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)


class VideoFileRequest(BaseModel):
    """POST /v1/videos/files on a worker: the finished MP4, streamed, then deleted there."""

    model_config = ConfigDict(extra="forbid", strict=True)

    file: str = Field(pattern=r"^vid_[0-9a-f]{32}$")
