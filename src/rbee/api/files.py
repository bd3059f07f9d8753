"""OpenAI's Files API, the part rbee serves: a file uploaded for a job to read (`transcribe`
names it by `file_id`), kept as an artifact under the queen's retention."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

PURPOSE = "user_data"  # OpenAI's purpose for files a request reads: the one rbee takes


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str = PURPOSE
    status: Literal["processed"] = "processed"
    expires_at: int | None = None  # when retention removes it (none: kept until deleted)


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool
