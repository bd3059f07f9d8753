"""Tenants, users and API keys: the admin API's requests and answers (/v1/admin/...).

A key is shown once, in `KeyCreated.key`; everything else about it (`KeyInfo`) names it by
its public id, the `rbee-<id>` prefix of the key itself, never by the secret.
"""

from __future__ import annotations

import re
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

Role = Literal["admin", "operator", "user"]
ROLES: tuple[Role, ...] = ("user", "operator", "admin")  # each may do what those before it may
Priority = Literal["interactive", "batch"]
T = TypeVar("T")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
NAME_RULE = "1-64 letters, digits, '_', '.', '@' or '-', starting with a letter or digit"


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"must be {NAME_RULE}")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TenantCreate(_Strict):
    name: str = Field(description=NAME_RULE)
    labels: dict[str, str] = Field(default_factory=dict, max_length=32,
                                   description="Free-form labels; scheduling scripts see them")
    regions: list[str] | None = Field(
        default=None, max_length=32, description="Data residency: the only regions (hives' "
        "Region) its requests may run in, e.g. [\"eu\"]; none: any")
    requires_consent: bool = Field(default=False, description="GDPR: its users' inference "
                                   "is refused until they consent to purpose 'processing'")

    _check_name = field_validator("name")(_name)

    @field_validator("regions")
    @classmethod
    def _regions(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or any(not _NAME.match(r) for r in value)):
            raise ValueError(f"must name at least one region, each {NAME_RULE}")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for k, v in value.items():
            if not 0 < len(k) <= 64 or len(v) > 256:
                raise ValueError("keys must be 1-64 characters and values at most 256")
        return value


class Tenant(BaseModel):
    id: str
    name: str
    labels: dict[str, str]
    regions: list[str] | None = None
    created_at: float
    requires_consent: bool = False


class TenantUpdate(_Strict):
    requires_consent: bool = Field(description="GDPR: refuse its users' inference until they "
                                   "consent to purpose 'processing'")


class UserCreate(_Strict):
    tenant: str = Field(description="The tenant's id or name")
    name: str = Field(description=NAME_RULE)
    email: str | None = Field(default=None, max_length=254)

    _check_name = field_validator("name")(_name)


class User(BaseModel):
    id: str
    tenant_id: str
    name: str
    email: str | None
    created_at: float


class KeyCreate(_Strict):
    user: str = Field(description="The user's id")
    name: str = Field(default="", max_length=64, description="What the key is for")
    role: Role = "user"
    models: list[str] | None = Field(default=None, max_length=256, description="Models the key "
                                     "may use (names as /v1/models lists them); none: all")
    max_priority: Priority = Field(default="interactive", description="The most urgent "
                                   "priority its requests may ask for")
    expires_in_days: float | None = Field(default=None, gt=0, le=3650)

    @field_validator("models")
    @classmethod
    def _models(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or any(not 0 < len(m) <= 512 for m in value)):
            raise ValueError("must name at least one model (leave it out for all models)")
        return value


class KeyInfo(BaseModel):
    id: str = Field(description="Public: the key starts with rbee-<id>-")
    user_id: str
    tenant_id: str
    name: str
    role: Role
    models: list[str] | None
    max_priority: Priority
    created_at: float
    expires_at: float | None
    revoked_at: float | None


class KeyCreated(KeyInfo):
    key: str = Field(description="The key itself: shown this once, stored only as a hash")


class Listed(BaseModel, Generic[T]):
    object: Literal["list"] = "list"
    data: list[T]
