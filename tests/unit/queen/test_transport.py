"""The WorkerTransport contract, held by every implementation against real local servers.

The relay enforces its deadlines whatever the transport is, but relies on each transport
for these: a connect deadline, TransportError on any broken connection, `close()` hangs up
(the worker stops generating), a connection is reused only once its body was read to its
end, and probes get through while requests hang.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from rbee.queen.transport import (
    AiohttpTransport,
    Deadlines,
    FileBody,
    TransportError,
    WorkerTransport,
)
from rbee.queen.transport_httptools import HttptoolsTransport

DEADLINES = Deadlines(connect=0.3, probe=0.3)
JSON = b'{"ok":true}'
FRAMES = [b'data: {"n":1}\n\n', b'data: {"n":2}\n\n', b"data: [DONE]\n\n"]
Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]
FLOOD = 256 << 20  # what a fast worker would send a client that stopped reading


def _answer(status: int, body: bytes, extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
            % (status, len(body), extra)) + body


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


CHUNKED = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n")


class Worker:
    """A loopback HTTP/1.1 server answering by path; it counts connections and hang-ups."""

    def __init__(self) -> None:
        self.connections = 0
        self.hangups = 0
        self._hung_up = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self._routes: dict[str, Callable[[Stream], Awaitable[bool]]] = {
            "/ok": self._ok, "/health": self._ok, "/sick": self._sick, "/hang": self._hang,
            "/cut": self._cut, "/partial": self._partial, "/sse": self._sse,
            "/sse-cut": self._sse_cut, "/sse-slow": self._sse_slow, "/bye": self._bye,
            "/silent": self._silent, "/garbage": self._garbage, "/eof": self._eof,
            "/cut-close": self._cut_close, "/flood": self._flood,
        }
        self.flooded = 0  # body bytes /flood got written (past the socket's buffers)
        self.requests: list[tuple[list[str], bytes]] = []  # (head lines, body) of each

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()

    async def hung_up(self, count: int = 1) -> None:
        """Wait (1 s at most) until `count` connections have ended."""
        async with asyncio.timeout(1.0), self._hung_up:
            await self._hung_up.wait_for(lambda: self.hangups >= count)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while await self._one(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            async with self._hung_up:
                self.hangups += 1
                self._hung_up.notify_all()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False: close the connection."""
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        length = next((int(line.split(":")[1]) for line in head
                       if line.lower().startswith("content-length:")), 0)
        self.requests.append((head, await reader.readexactly(length)))
        return await self._routes[head[0].split(" ")[1]]((reader, writer))

    async def _ok(self, s: Stream) -> bool:
        s[1].write(_answer(200, JSON))
        return True

    async def _sick(self, s: Stream) -> bool:
        s[1].write(_answer(503, JSON))
        return True

    async def _hang(self, s: Stream) -> bool:
        await s[0].read()  # until the client hangs up
        return False

    async def _cut(self, s: Stream) -> bool:
        s[1].write(_answer(200, JSON)[:-4])  # four bytes short, then gone
        return False

    async def _partial(self, s: Stream) -> bool:
        s[1].write(_answer(200, JSON)[:-4])  # four bytes short, and waits
        await s[0].read()
        return False

    async def _sse(self, s: Stream) -> bool:
        s[1].write(CHUNKED)
        for frame in FRAMES:
            await asyncio.sleep(0.01)
            s[1].write(_chunk(frame))
        s[1].write(b"0\r\n\r\n")
        return True

    async def _sse_cut(self, s: Stream) -> bool:
        s[1].write(CHUNKED + _chunk(FRAMES[0]))
        await asyncio.sleep(0.01)
        return False

    async def _sse_slow(self, s: Stream) -> bool:
        s[1].write(CHUNKED + _chunk(FRAMES[0]))
        await s[0].read()  # a generation that goes on until the queen hangs up
        return False

    async def _bye(self, s: Stream) -> bool:
        s[1].write(_answer(200, JSON))
        await asyncio.sleep(0.02)  # its keep-alive timeout, a little later
        return False

    async def _eof(self, s: Stream) -> bool:
        s[1].write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + JSON)  # ends at EOF
        return False

    async def _cut_close(self, s: Stream) -> bool:
        s[1].write(_answer(200, JSON, b"Connection: close\r\n")[:-4])
        return False

    async def _flood(self, s: Stream) -> bool:
        s[1].write(CHUNKED)
        chunk = _chunk(b"x" * 65536)
        while self.flooded < FLOOD:
            s[1].write(chunk)
            await s[1].drain()  # blocks once the client stops reading
            self.flooded += len(chunk)
        return False

    async def _silent(self, s: Stream) -> bool:
        return False

    async def _garbage(self, s: Stream) -> bool:
        s[1].write(b"SPDY/9 what\r\n\r\n")
        await s[0].read()
        return False


@pytest.fixture
async def worker() -> AsyncIterator[Worker]:
    w = Worker()
    await w.start()
    yield w
    await w.stop()


Kind = type[HttptoolsTransport] | type[AiohttpTransport]


@pytest.fixture(params=[HttptoolsTransport, AiohttpTransport])
def kind(request: pytest.FixtureRequest) -> Kind:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def transport(kind: Kind) -> AsyncIterator[WorkerTransport]:
    t = kind(DEADLINES)
    yield t
    await t.close()
    await asyncio.sleep(0.01)  # let the closed sockets go before the loop does


@pytest.fixture
def unanswered() -> Iterator[str]:
    """A listener whose backlog is full: a connect to it hangs (SYNs dropped)."""
    with socket.socket() as server, socket.socket() as filler:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        filler.connect(server.getsockname())
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # closed again: nobody listens


H = {"Content-Type": "application/json"}


async def test_a_reader_that_stops_stops_the_worker(transport: WorkerTransport,
                                                    worker: Worker) -> None:
    """A client that stops reading a stream must not make the queen buffer it all."""
    upstream = await transport.open(worker.url + "/flood", b"{}", H)
    chunks = upstream.chunks()
    await anext(chunks)
    await asyncio.sleep(0.3)
    try:
        assert worker.flooded < 64 << 20  # socket buffers and a bounded read-ahead at most
    finally:
        upstream.close()
        await worker.hung_up()


async def test_a_whole_answer_on_one_kept_connection(transport: WorkerTransport,
                                                     worker: Worker) -> None:
    for _ in range(3):
        assert await transport.post(worker.url + "/ok", b"{}", H) == (200, JSON)
    assert await transport.post(worker.url + "/sick", b"{}", H) == (503, JSON)
    assert worker.connections == 1


async def test_a_chunked_stream_arrives_decoded_and_its_connection_is_kept(
        transport: WorkerTransport, worker: Worker) -> None:
    upstream = await transport.open(worker.url + "/sse", b"{}", H)
    assert upstream.status == 200
    assert b"".join([chunk async for chunk in upstream.chunks()]) == b"".join(FRAMES)
    upstream.close()  # what the relay does at a stream's end: a no-op once it was read
    assert await transport.post(worker.url + "/ok", b"{}", H) == (200, JSON)
    assert worker.connections == 1


async def test_close_hangs_up_on_the_worker(transport: WorkerTransport, worker: Worker) -> None:
    upstream = await transport.open(worker.url + "/sse-slow", b"{}", H)
    chunks = upstream.chunks()
    assert await anext(chunks) == FRAMES[0]
    upstream.close()
    await worker.hung_up()
    with pytest.raises((TransportError, StopAsyncIteration)):  # it ends, one way or another
        await anext(chunks)


async def test_a_body_without_a_length_ends_when_the_worker_closes(
        transport: WorkerTransport, worker: Worker) -> None:
    assert await transport.post(worker.url + "/eof", b"{}", H) == (200, JSON)


@pytest.mark.parametrize("path", ["/cut", "/cut-close", "/silent", "/garbage"])
async def test_a_broken_answer_is_a_transport_error(transport: WorkerTransport, worker: Worker,
                                                    path: str) -> None:
    with pytest.raises(TransportError):
        await transport.post(worker.url + path, b"{}", H)


async def test_a_stream_cut_mid_body_is_a_transport_error(transport: WorkerTransport,
                                                          worker: Worker) -> None:
    upstream = await transport.open(worker.url + "/sse-cut", b"{}", H)
    received = []
    with pytest.raises(TransportError):
        async for chunk in upstream.chunks():
            received.append(chunk)
    upstream.close()  # as the relay does, however a stream ended
    assert b"".join(received) == FRAMES[0]


async def test_a_hung_worker_is_hung_up_on_when_the_caller_gives_up(
        transport: WorkerTransport, worker: Worker) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await transport.post(worker.url + "/hang", b"{}", H)
    await worker.hung_up()
    assert await transport.post(worker.url + "/ok", b"{}", H) == (200, JSON)


@pytest.mark.parametrize("drop", ["release", "close"])
async def test_a_connection_whose_body_was_not_read_to_its_end_is_not_reused(
        transport: WorkerTransport, worker: Worker, drop: str) -> None:
    upstream = await transport.open(worker.url + "/partial", b"{}", H)
    getattr(upstream, drop)()
    await worker.hung_up()
    assert await transport.post(worker.url + "/ok", b"{}", H) == (200, JSON)
    assert worker.connections == 2


async def test_an_idle_connection_the_worker_closed_is_not_used(transport: WorkerTransport,
                                                                worker: Worker) -> None:
    assert await transport.post(worker.url + "/bye", b"{}", H) == (200, JSON)
    await worker.hung_up()
    await asyncio.sleep(0.01)  # the client side sees the FIN
    assert await transport.post(worker.url + "/ok", b"{}", H) == (200, JSON)
    assert worker.connections == 2


async def test_a_connection_idle_past_the_keepalive_is_not_used(kind: Kind,
                                                                worker: Worker) -> None:
    """Dropped before the worker's own keep-alive timeout could close it under a request."""
    short = kind(DEADLINES, keepalive=0.05)
    try:
        assert await short.post(worker.url + "/ok", b"{}", H) == (200, JSON)
        await asyncio.sleep(0.1)
        assert await short.post(worker.url + "/ok", b"{}", H) == (200, JSON)
        assert worker.connections == 2
    finally:
        await short.close()


async def test_nobody_listening_is_a_transport_error(transport: WorkerTransport) -> None:
    with pytest.raises(TransportError):
        await transport.post(_dead_url() + "/ok", b"{}", H)


async def test_a_connect_that_hangs_ends_at_the_connect_deadline(transport: WorkerTransport,
                                                                 unanswered: str) -> None:
    started = time.monotonic()
    with pytest.raises(TransportError):  # not TimeoutError: the relay's own deadline is that
        await transport.open(unanswered + "/ok", b"{}", H)
    assert DEADLINES.connect - 0.05 < time.monotonic() - started < DEADLINES.connect + 0.5


async def test_probes(transport: WorkerTransport, worker: Worker, unanswered: str) -> None:
    assert await transport.probe(worker.url + "/health")
    assert not await transport.probe(worker.url + "/sick")
    assert not await transport.probe(_dead_url() + "/health")
    started = time.monotonic()
    assert not await transport.probe(worker.url + "/hang")
    assert not await transport.probe(unanswered + "/health")
    assert time.monotonic() - started < 2 * DEADLINES.probe + 0.5


async def test_a_probe_gets_through_while_requests_hang(transport: WorkerTransport,
                                                        worker: Worker) -> None:
    hung = [asyncio.create_task(transport.post(worker.url + "/hang", b"{}", H))
            for _ in range(4)]
    await asyncio.sleep(0.05)
    try:
        assert await transport.probe(worker.url + "/health")
    finally:
        for task in hung:
            task.cancel()
        await asyncio.gather(*hung, return_exceptions=True)


async def test_a_file_body_is_sent_whole_from_disk_and_again_on_a_second_send(
        transport: WorkerTransport, worker: Worker, tmp_path: Path) -> None:
    data = os.urandom(3 * 256 * 1024 + 17)  # several read chunks and a partial one
    path = tmp_path / "upload"
    path.write_bytes(data)
    body = FileBody(path, len(data), "multipart/form-data; boundary=b", head=b"HEAD",
                    tail=b"TAIL")
    for _ in range(2):  # a failover re-sends the same body: read from its start again
        assert await transport.post(worker.url + "/ok", body,
                                    {"Content-Type": body.content_type}) == (200, JSON)
    for head, received in worker.requests:
        assert received == b"HEAD" + data + b"TAIL"
        assert f"content-length: {len(body)}" in [line.lower() for line in head]
        assert "content-type: multipart/form-data; boundary=b" in [
            line.lower() for line in head]
    assert len(worker.requests) == 2 and worker.connections == 1  # and the connection kept


async def test_a_file_body_to_a_dead_worker_is_a_transport_error(
        transport: WorkerTransport, tmp_path: Path) -> None:
    path = tmp_path / "upload"
    path.write_bytes(b"x" * 1000)
    with pytest.raises(TransportError):
        await transport.post(_dead_url() + "/ok", FileBody(path, 1000, "audio/wav"), H)
