from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request
from pydantic import BaseModel

from rbee.api import sse
from rbee.client._client import parse_sse
from rbee.core.errors import InvalidRequest, Unauthorized
from rbee.web.auth import check_bearer, fingerprint, is_loopback, refuse_open_listener
from rbee.web.body import UnsupportedMediaType, is_json_type, parse_model, parse_object
from rbee.web.errors import install_error_handlers
from rbee.web.limits import BodyLimit


class Empty(BaseModel):
    pass


def app_with_limit(limit: int) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    app.add_middleware(BodyLimit, max_bytes=limit)
    return app


async def test_body_limit_by_header_and_by_stream() -> None:
    transport = httpx.ASGITransport(app=app_with_limit(10))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        assert (await c.post("/echo", content=b"x" * 10)).json() == {"size": 10}
        r = await c.post("/echo", content=b"x" * 11)
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
            for _ in range(5):
                yield b"xxxx"

        r = await c.post("/echo", content=chunks())
        assert r.status_code == 413


def test_bearer_checks() -> None:
    check_bearer(None, None)
    check_bearer("Bearer abc", "abc")
    check_bearer("bearer abc ", "abc")
    for header in (None, "", "abc", "Bearer abd", "Basic abc", "Bearer"):
        with pytest.raises(Unauthorized):
            check_bearer(header, "abc")


def test_fingerprint_never_contains_the_token() -> None:
    fp = fingerprint("super-secret-token")
    assert "super-secret" not in fp and fp.startswith("sha256:")


@pytest.mark.parametrize(("host", "loop"), [("127.0.0.1", True), ("::1", True),
                                            ("localhost", True), ("127.5.5.5", True),
                                            ("0.0.0.0", False), ("10.0.0.1", False),
                                            ("example.com", False)])
def test_loopback(host: str, loop: bool) -> None:
    assert is_loopback(host) is loop


def test_open_listener_refused_without_token() -> None:
    refuse_open_listener("127.0.0.1", None, "x")
    refuse_open_listener("0.0.0.0", "token", "x")
    with pytest.raises(SystemExit):
        refuse_open_listener("0.0.0.0", None, "x")


def test_sse_frames_round_trip() -> None:
    raw = (sse.event_frame(0, "token", {"t": "a", "i": 0}) + sse.KEEPALIVE
           + sse.event_frame(1, "done", {})).decode()
    events = list(parse_sse(iter(raw.split("\n"))))
    assert [(e.seq, e.event, e.data) for e in events] == [(0, "token", {"t": "a", "i": 0}),
                                                          (1, "done", {})]
    assert sse.parse_data_line("data: [DONE]") == "[DONE]"
    assert sse.parse_data_line(": keep-alive") is None


@pytest.mark.parametrize(("content_type", "ok"), [
    ("application/json", True), ("application/json; charset=utf-8", True),
    ("APPLICATION/JSON ;charset=UTF-8", True), ("application/vnd.api+json", True),
    (None, False), ("", False), ("text/plain", False), ("text/json", False),
    ("application/jsonp", False), ("application/x-www-form-urlencoded", False),
    ("multipart/form-data; boundary=x", False), ("application/json+xml", False)])
def test_json_content_types(content_type: str | None, ok: bool) -> None:
    assert is_json_type(content_type) is ok


def test_a_body_not_declared_json_is_415_before_parsing() -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        parse_model(b"{not even json", Empty, "text/plain")
    assert caught.value.http_status == 415
    assert caught.value.to_envelope()["error"] == {
        "message": caught.value.message, "type": "invalid_request_error",
        "param": "Content-Type", "code": "unsupported_media_type"}
    with pytest.raises(UnsupportedMediaType):
        parse_object(b"{}", None)
    # An empty body is a 400 that says the body is missing, whatever its type.
    with pytest.raises(InvalidRequest) as empty:
        parse_model(b"", Empty, None)
    assert empty.value.http_status == 400


@pytest.mark.parametrize("raw", [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 5000 + b"1"
                                 + b"}" * 5000])
def test_deep_json_is_a_400_on_both_parsers(raw: bytes) -> None:
    for parse in (lambda: parse_object(raw, "application/json"),
                  lambda: parse_model(raw, Empty, "application/json")):
        with pytest.raises(InvalidRequest) as caught:
            parse()
        assert caught.value.http_status == 400
        assert caught.value.message == "request body is not valid JSON"


def test_parse_object_wants_an_object() -> None:
    assert parse_object(b'{"a": [1]}', "application/json") == {"a": [1]}
    for raw in (b"[]", b"null", b"1", b'{"a": NaN}', b"\xff"):
        with pytest.raises(InvalidRequest):
            parse_object(raw, "application/json")
