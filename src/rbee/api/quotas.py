"""Quotas, prices and usage: the admin API's requests and answers (/v1/admin/.../limits,
/v1/admin/prices, /v1/usage).

Every limit is optional (None: unlimited). Minutes are fixed UTC minutes, days UTC days, the
budget a UTC calendar month's cost (see queen.quotas for why fixed windows).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Scope = Literal["tenant", "key"]
UNITS = ("input_tokens", "output_tokens", "audio_seconds", "images", "video_seconds")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Limits(_Strict):
    requests_per_minute: int | None = Field(default=None, ge=0, le=10**9)
    tokens_per_minute: int | None = Field(default=None, ge=0, le=10**12)
    tokens_per_day: int | None = Field(default=None, ge=0, le=10**13)
    concurrent_requests: int | None = Field(default=None, ge=0, le=10**6)
    budget: float | None = Field(default=None, ge=0, le=1e15, allow_inf_nan=False,
                                 description="Cost units per UTC calendar month")

    def empty(self) -> bool:
        return all(v is None for v in self.model_dump().values())


class LimitsInfo(Limits):
    """Limits as stored, with what they belong to."""

    model_config = ConfigDict(extra="forbid", strict=False)
    scope: Scope
    id: str


class Prices(_Strict):
    """Cost units per unit of a model's use: one token in or out, one second of audio in or
    out, one image, one second of video. A model without prices costs nothing."""

    input_tokens: float = Field(default=0.0, ge=0, le=1e9, allow_inf_nan=False)
    output_tokens: float = Field(default=0.0, ge=0, le=1e9, allow_inf_nan=False)
    audio_seconds: float = Field(default=0.0, ge=0, le=1e9, allow_inf_nan=False)
    images: float = Field(default=0.0, ge=0, le=1e9, allow_inf_nan=False)
    video_seconds: float = Field(default=0.0, ge=0, le=1e9, allow_inf_nan=False)


class ModelPrices(Prices):
    model_config = ConfigDict(extra="forbid", strict=False)
    model: str


class UsageRow(BaseModel):
    """One tenant's use of one model with one key on one UTC day, from the engines' counts."""

    day: str
    tenant_id: str
    key_id: str
    model: str
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    audio_seconds: float = 0.0
    images: int = 0
    video_seconds: float = 0.0
    cost: float = 0.0


USAGE_COLUMNS = tuple(UsageRow.model_fields)
