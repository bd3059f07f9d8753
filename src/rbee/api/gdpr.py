"""GDPR requests and answers (/gdpr/...): export, erasure with a signed receipt, consent."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rbee.api.identity import NAME_RULE, _name

PROCESSING = "processing"  # the purpose a tenant's `requires_consent` asks for


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class DeleteRequest(_Strict):
    subject: str = Field(min_length=1, max_length=64, description="The user's id")


class ConsentRequest(_Strict):
    subject: str = Field(min_length=1, max_length=64, description="The user's id")
    purpose: str = Field(description=f"What it is for ({NAME_RULE}); 'processing' is what "
                         "a tenant with requires_consent asks for")
    granted: bool = Field(description="true: given; false: withdrawn")

    _check_purpose = field_validator("purpose")(_name)


class Consent(BaseModel):
    subject: str
    purpose: str
    granted: bool
    at: float
    by_key: str | None = Field(description="The key that recorded it (its public id)")


class Receipt(BaseModel):
    """An erasure's receipt: what went, signed by the queen (HMAC-SHA256 over the canonical
    JSON of every other field). The queen keeps no copy: it names the person."""

    model_config = ConfigDict(extra="forbid")

    format: str = "rbee-gdpr-receipt/1"
    subject: str
    erased_at: float
    deleted: dict[str, int] = Field(description="jobs, responses, artifacts, keys, consents, "
                                    "usage rows folded into aggregates, script versions no "
                                    "longer naming their key")
    user: str = Field(description="What became of the account: 'removed'")
    audit: dict[str, Any] = Field(description="entries unlinked, personal rows deleted, and "
                                  "the audit chain's head after the gdpr.erase entry")
    signature: str = Field(default="", description="hex HMAC-SHA256, 'hmac-sha256:' first")


class ReceiptCheck(BaseModel):
    valid: bool
