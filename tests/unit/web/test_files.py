"""A file answer opens its file before the headers go out: deleted meanwhile (retention, a
delete), it still arrives whole; already gone, it is the caller's 404."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rbee.core.errors import NotFound
from rbee.web.files import CHUNK, file_response


async def test_a_file_deleted_after_the_answer_began_arrives_whole(tmp_path: Path) -> None:
    path = tmp_path / "video.mp4"
    data = bytes(range(256)) * (3 * CHUNK // 256 + 7)  # several chunks
    path.write_bytes(data)

    async def download(_: Request) -> Response:
        response = file_response(path, media_type="video/mp4", filename="a bee.mp4")
        path.unlink()  # purged between the headers and the body
        return response

    app = Starlette(routes=[Route("/f", download)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://x") as client:
        r = await client.get("/f")
    assert r.content == data and int(r.headers["content-length"]) == len(data)
    assert r.headers["content-type"] == "video/mp4"
    assert "a%20bee.mp4" in r.headers["content-disposition"]


def test_a_file_already_gone_is_the_callers_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no artifact"):
        file_response(tmp_path / "gone", media_type="video/mp4",
                      missing=NotFound("no artifact 'x'", param="artifact_id"))
