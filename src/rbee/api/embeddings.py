"""OpenAI's embeddings request and response (POST /v1/embeddings).

`input` is one text, a list of texts, one token-id list or a list of them; every failure of
its shape is a 400 naming `input` (pydantic's own union errors would name `input.str`,
`input.list[str]`… and quote four alternatives).
"""

from __future__ import annotations

import array
import base64
import struct
import sys
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rbee.api.openai import ModelName

# OpenAI's own limit on inputs per request; a queen setting may lower it.
MAX_INPUTS = 2048
MAX_TOKEN_ID = 2**31 - 1
# Texts or token-id lists, as the client sent them (one input is a list of one).
Inputs = list[str] | list[list[int]]


def _is_token(value: object) -> bool:
    return type(value) is int and 0 <= value <= MAX_TOKEN_ID  # not bool, not 3.0


def _is_tokens(value: object) -> bool:
    return isinstance(value, list) and all(_is_token(t) for t in value)


def normalize_input(value: object) -> Inputs:
    """The inputs as a list; a ValueError (a 400 on `input`) says what is wrong."""
    if isinstance(value, str):
        value = [value]
    elif isinstance(value, list) and value and _is_token(value[0]):
        value = [value]  # one token-id list
    if not isinstance(value, list):
        raise ValueError("must be a string, an array of strings, an array of token ids "
                         "(integers) or an array of such arrays")
    if not value:
        raise ValueError("must not be empty")
    if len(value) > MAX_INPUTS:
        raise ValueError(f"has {len(value)} items; at most {MAX_INPUTS} are allowed")
    if all(isinstance(v, str) for v in value):
        empty = next((i for i, v in enumerate(value) if not v), None)
        if empty is not None:
            raise ValueError(f"item {empty} is an empty string")
        return value
    if all(_is_tokens(v) for v in value):
        empty = next((i for i, v in enumerate(value) if not v), None)
        if empty is not None:
            raise ValueError(f"item {empty} is an empty array of token ids")
        return value
    bad = next(i for i, v in enumerate(value) if not isinstance(v, str) and not _is_tokens(v))
    raise ValueError(f"item {bad} is neither a string nor an array of non-negative integer "
                     "token ids (and all items must be of one kind)")


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: ModelName = Field(max_length=512)
    input: Any = Field(description="a string, an array of strings, an array of token ids, "
                       "or an array of token-id arrays")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1, le=65_536)
    user: str | None = Field(default=None, max_length=256)

    @field_validator("input", mode="before")
    @classmethod
    def _input(cls, value: object) -> Inputs:
        return normalize_input(value)

    def inputs(self) -> Inputs:
        return self.input  # type: ignore[no-any-return]  # normalised by _input


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


def as_float32(vector: list[float]) -> list[float]:
    """The values a float32 vector holds: what `float` answers carry, so that they are the
    very numbers a `base64` answer decodes to."""
    return array.array("f", vector).tolist()


def encode_base64(vector: list[float]) -> str:
    """OpenAI's `base64` format: the vector's little-endian float32 bytes."""
    values = array.array("f", vector)
    if sys.byteorder == "big":
        values.byteswap()
    return base64.b64encode(values.tobytes()).decode("ascii")


def decode_base64(text: str) -> list[float]:
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))

