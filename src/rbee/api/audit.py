"""Wire schemas of the audit API (/v1/admin/audit): entries, pages, verification."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class AuditEntry(BaseModel):
    seq: int
    at: float = Field(description="Unix seconds")
    action: str = Field(description="e.g. inference, job.infer, admin.script.save, "
                        "auth.failure, gdpr.erase, audit.archive")
    outcome: str = Field(description="ok, error, denied or cancelled")
    tenant: str | None
    actor_ref: str | None = Field(description="pseudonym of the person who acted")
    actor: dict[str, Any] = Field(description="role; personal fields only as pseudonyms")
    subject: str | None = Field(description="what it acted on, or a person's pseudonym")
    details: dict[str, Any]
    prev: str = Field(description="hash of the entry before")
    hash: str
    personal: list[dict[str, Any]] = Field(
        default_factory=list, description="the clear personal fields behind the pseudonyms "
        "(gone once the person is erased)")


class AuditPage(BaseModel):
    data: list[AuditEntry]
    next_cursor: int | None = Field(description="pass as `after` for the next page")


class ChainHead(BaseModel):
    seq: int
    hash: str


class ChainProblem(BaseModel):
    kind: Literal["edited", "missing", "out_of_order", "truncated", "malformed",
                  "archive_missing", "forged"]
    seq: int = Field(description="the first entry that does not match")
    message: str


class AuditVerdict(BaseModel):
    ok: bool
    entries: int = Field(description="entries checked")
    first_seq: int | None
    head: ChainHead = Field(description="the last entry that verified")
    problem: ChainProblem | None
    archives: list[str] = Field(description="archive files walked first")
