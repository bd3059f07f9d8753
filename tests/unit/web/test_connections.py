"""Connection deadlines in-process (tens of milliseconds), the cap's fit, the open-file limit.

The cases a real queen cannot stage cheaply: a response that outlasts every deadline, a body
the app is slow to read (uvicorn pauses reading: not the client's fault), a pipelined request.
tests/integration/test_slow_clients.py covers the rest against a real queen.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
from collections.abc import AsyncIterator

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from rbee.web import connections
from rbee.web.connections import (
    RESERVED_FDS,
    ConnectionLimits,
    connection_cap,
    raise_open_file_limit,
)
from rbee.web.serve import server_config

LIMITS = ConnectionLimits(header_timeout=0.3, body_timeout=0.3, keep_alive_timeout=0.3,
                          max_connections=4)
STREAM_CHUNKS = 8  # 0.1 s apart: the response outlasts every deadline twice over


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """/stream: chunks over 0.8 s; /late-read: reads the body after 0.8 s, answers its size."""
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["path"] == "/late-read":
        await asyncio.sleep(0.8)
        size, more = 0, True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        body = str(size).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for i in range(STREAM_CHUNKS):
        await asyncio.sleep(0.1)
        await send({"type": "http.response.body", "body": b"chunk%d\n" % i, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(server_config(app, host="127.0.0.1", port=port, limits=LIMITS))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        await task
        sock.close()


async def read_all(reader: asyncio.StreamReader, within: float = 5.0) -> bytes:
    """Everything until the server closes (a timeout here fails the test)."""
    async with asyncio.timeout(within):
        return await reader.read()


async def test_a_response_longer_than_every_deadline_is_not_cut() -> None:
    async with serving() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /stream HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = await read_all(reader)
        writer.close()
    assert data.startswith(b"HTTP/1.1 200 ")
    assert all(b"chunk%d\n" % i in data for i in range(STREAM_CHUNKS))
    assert data.endswith(b"0\r\n\r\n")  # the chunked body ended, it was not cut


async def test_a_body_the_app_reads_late_is_not_timed_out() -> None:
    """Past 64 KiB uvicorn stops reading until the app asks: the wait is ours, not a stall."""
    body = b"x" * (1024 * 1024)
    async with serving() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /late-read HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        data = await read_all(reader)
        writer.close()
    assert data.startswith(b"HTTP/1.1 200 "), data[:80]
    assert data.endswith(b"\r\n\r\n%d" % len(body))


async def test_a_pipelined_request_does_not_cut_the_response_before_it() -> None:
    async with serving() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # The next request's headers start (and stall) while the stream is going out.
        writer.write(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\nGET /stream HTTP/1.1\r\nHo")
        data = await read_all(reader)
        writer.close()
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"chunk%d\n" % (STREAM_CHUNKS - 1) in data and b"0\r\n\r\n" in data
    # ...and the stalled one is then dropped: 408, or closed by the keep-alive timer that
    # uvicorn arms after the first response, whichever fires first.
    assert data.count(b"HTTP/1.1 200 ") == 1


def test_the_open_file_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 64:
        pytest.fail(f"this test needs a finite hard open-file limit above 64, not {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    try:
        assert raise_open_file_limit() == hard
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_refused_raise_keeps_the_limit_and_says_so(monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    def refuse(which: int, limits: tuple[int, int]) -> None:
        raise ValueError("not allowed")

    monkeypatch.setattr(connections.resource, "getrlimit", lambda which: (1024, 4096))
    monkeypatch.setattr(connections.resource, "setrlimit", refuse)
    assert raise_open_file_limit() == 1024
    assert "could not raise the open-file limit" in caplog.text


def test_the_cap_is_lowered_to_fit_the_open_file_limit() -> None:
    assert connection_cap(4096, 1_048_576) == 4096
    # Three descriptors per unit of cap (served, its upstream, one waiting for its 503).
    assert connection_cap(4096, 1024) == (1024 - RESERVED_FDS) // 3
    assert connection_cap(4096, 100) == 1  # never none at all
