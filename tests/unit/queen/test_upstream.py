"""The lean keep-alive client against a tiny in-process HTTP/1.1 server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from rbee.queen.upstream import LeanClient, UpstreamClosed


class Server:
    """Answers every POST with its body echoed; optionally closes after each answer."""

    def __init__(self, close_after_answer: bool = False, hang: bool = False) -> None:
        self.connections = 0
        self.requests: list[bytes] = []
        self.close_after_answer = close_after_answer
        self.hang = hang
        self.closed_by_client = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        while True:
            head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
            if not head:
                break
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            body = await reader.readexactly(length)
            self.requests.append(head + body)
            if self.hang:
                if not await reader.read(1):
                    self.closed_by_client.set()
                break
            writer.write(b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\n"
                         b"content-length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            if self.close_after_answer:
                break
        writer.close()


async def serve(server: Server) -> AsyncIterator[str]:
    s = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = s.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1/chat/completions"
    finally:
        s.close()


@pytest.fixture
async def keepalive() -> AsyncIterator[tuple[Server, str]]:
    server = Server()
    async for url in serve(server):
        yield server, url


async def test_reuses_one_connection_and_sends_headers(keepalive: tuple[Server, str]) -> None:
    server, url = keepalive
    client = LeanClient({"Authorization": "Bearer t", "Content-Type": "application/json"})
    for i in range(5):
        assert await client.post(url, b'{"n": %d}' % i) == (201, b'{"n": %d}' % i)
    assert server.connections == 1
    assert b"POST /v1/chat/completions HTTP/1.1" in server.requests[0]
    assert b"Authorization: Bearer t" in server.requests[0]
    client.close()


async def test_an_idle_connection_the_worker_closed_is_retried_on_a_new_one() -> None:
    server = Server(close_after_answer=True)
    async for url in serve(server):
        client = LeanClient({})
        assert await client.post(url, b"a") == (201, b"a")
        await asyncio.sleep(0.05)  # the server has closed the pooled connection by now
        assert await client.post(url, b"b") == (201, b"b")
        assert server.connections == 2
        client.close()


async def test_a_fresh_connection_that_fails_is_an_error() -> None:
    server = Server(hang=True)
    async for url in serve(server):
        client = LeanClient({})
        task = asyncio.create_task(client.post(url, b"x"))
        await asyncio.sleep(0.05)
        task.cancel()  # a client hang-up at the queen
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(server.closed_by_client.wait(), 2)  # the worker sees it
    with pytest.raises(OSError):
        await LeanClient({}).post(url, b"x")  # nothing listens any more


async def test_connection_closed_mid_response() -> None:
    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await writer.drain()
        writer.close()

    s = await asyncio.start_server(half, "127.0.0.1", 0)
    port = s.sockets[0].getsockname()[1]
    with pytest.raises(UpstreamClosed):
        await LeanClient({}).post(f"http://127.0.0.1:{port}/x", b"")
    s.close()
