"""A file streamed to the client from a handle opened before the answer starts.

Starlette's FileResponse opens the file only when the body is sent, after the headers (with
its length) went out: a file deleted in between (an artifact purged by retention, deleted
with its job) left the client a broken transfer. An open handle keeps the bytes readable
whatever happens to the name (POSIX), so the answer is whole.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

import anyio
from starlette.responses import StreamingResponse

from rbee.core.errors import NotFound

CHUNK = 256 * 1024


def file_response(path: Path, *, media_type: str, filename: str | None = None,
                  missing: NotFound | None = None) -> StreamingResponse:
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise missing or NotFound(f"no file {path.name!r}") from None
    size = os.fstat(handle.fileno()).st_size
    headers = {"content-length": str(size)}
    if filename:
        headers["content-disposition"] = f"attachment; filename*=utf-8''{quote(filename)}"
    return StreamingResponse(_chunks(handle), media_type=media_type, headers=headers)


async def _chunks(handle: BinaryIO) -> AsyncIterator[bytes]:
    try:
        while chunk := await anyio.to_thread.run_sync(handle.read, CHUNK):
            yield chunk
    finally:
        handle.close()
