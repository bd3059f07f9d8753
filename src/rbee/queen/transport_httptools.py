"""Queen→worker HTTP/1.1 on httptools: `AiohttpTransport`'s contract for less per request.

Why a second client: on the hot path (bench/queen_overhead.py) a keep-alive round trip
through aiohttp's ClientSession costs ~0.13 ms more than the same request written by hand
and parsed with httptools (uvicorn's parser), and the queen's whole budget is 0.5 ms. No
aiohttp setting narrows it (skipped auto headers, prebuilt URLs and header dicts measured
the same): the cost is its request machinery. Workers are our own processes speaking plain
HTTP/1.1 on known addresses, so this client writes one request in one `write` and parses
the answer as it arrives; no TLS, proxies, redirects, cookies or compression.

The guarantees are the ones `rbee.queen.relay` relies on, pinned by
tests/unit/queen/test_transport.py against both transports: a connect deadline, a
TransportError for every broken or unparsable connection, `close()` drops the connection
(the worker sees a hang-up), a connection goes back to the pool only once its body was read
to its end and the worker kept it alive, and probes have their own pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import cast
from urllib.parse import urlsplit

import httptools

from rbee.queen.transport import (
    KEEPALIVE,
    Body,
    Deadlines,
    FileBody,
    TransportError,
    Upstream,
    read_whole,
)

MAX_IDLE = 64  # idle connections kept per worker; more are closed when they come back
MAX_URLS = 4096  # parsed worker URLs remembered
HIGH_WATER = 256 * 1024  # body bytes buffered unread before the socket stops being read
Address = tuple[str, int]


class _Connection(asyncio.Protocol):
    """One TCP connection to a worker, and the response being read on it (one at a time)."""

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 on_lost: Callable[[_Connection], None]) -> None:
        self._loop = loop
        self._on_lost = on_lost
        self._transport: asyncio.Transport | None = None
        self._parser: httptools.HttpResponseParser | None = None  # None: no response due
        self._head: asyncio.Future[int] | None = None  # the status, once headers are in
        self._body: list[bytes] = []
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._framed = False  # Content-Length or chunked: else the body ends at EOF
        self._paused = False
        self._drained: asyncio.Future[None] | None = None  # set while writes are paused
        self.unsent = False  # a body left half-sent (answered early): never reused
        self.complete = False  # the whole response was read off the socket
        self.keep_alive = False
        self.error: TransportError | None = None
        self.closed = False
        self.idle_since = 0.0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        if self._parser is None:  # bytes nobody asked for: the connection is not HTTP
            self._fail("unexpected data from the worker")
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(f"bad response from the worker: {exc}")
            return
        if self._buffered > HIGH_WATER and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()  # the reader (a slow client) catches up first

    def pause_writing(self) -> None:
        self._drained = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    def eof_received(self) -> bool | None:
        self.closed = True  # not reused even before connection_lost runs
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.resume_writing()  # a body being written stops at its next chunk
        if self._parser is not None and not self.complete and self.error is None:
            if exc is None and self._head is not None and self._head.done() \
                    and not self._framed:
                self.on_message_complete()  # an unframed body ends when the worker closes
            else:
                why = f"{type(exc).__name__}: {exc}" if exc else "closed by the worker"
                self._set_error(f"connection {why} before the response ended")
        self._on_lost(self)

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        assert self._parser is not None and self._head is not None
        self.keep_alive = self._parser.should_keep_alive()  # asked now: reset once complete
        if not self._head.done():
            self._head.set_result(self._parser.get_status_code())

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._buffered += len(body)
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self._wake()

    # used by the transport and its upstreams
    def send(self, request: bytes) -> asyncio.Future[int]:
        """Write a request; the future resolves with the status once the headers are in."""
        self._parser = httptools.HttpResponseParser(self)
        self._head = self._loop.create_future()
        self._body, self._buffered, self._framed, self.complete = [], 0, False, False
        assert self._transport is not None
        if self._transport.is_closing():
            raise TransportError("connection closed by the worker")
        self._transport.write(request)
        return self._head

    async def write_body(self, chunks: AsyncIterator[bytes]) -> None:
        """Write a body after `send`'s head, as fast as the socket takes it (its buffer is
        bounded by asyncio's flow control, not by the body's size)."""
        assert self._transport is not None and self._head is not None
        head = self._head
        async with contextlib.aclosing(chunks):  # type: ignore[type-var]
            async for chunk in chunks:
                if head.done() or self.closed:  # answered already (a refusal): stop
                    self.unsent = True
                    return
                self._transport.write(chunk)
                if self._drained is not None:  # a worker that stopped reading and answered
                    await asyncio.wait((self._drained, head),
                                       return_when=asyncio.FIRST_COMPLETED)

    async def next_chunk(self) -> bytes:
        """The body bytes read so far and not yet returned; b"" once it has ended."""
        while not self._body:
            if self.complete:
                return b""
            if self.error is not None:
                raise self.error
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._body, self._buffered = [], 0
        if self._paused and self._transport is not None and not self.closed:
            self._paused = False
            self._transport.resume_reading()
        return data

    def reusable(self) -> bool:
        """The response was read to its end and the worker keeps the connection open."""
        return (self.complete and self.keep_alive and not self.closed and not self._body
                and not self.unsent)

    def idle(self) -> None:
        self._parser = None
        self.idle_since = time.monotonic()

    def close(self) -> None:
        """Drop the connection; a reader waiting on its response gets a TransportError."""
        self.closed = True
        if self._parser is not None and not self.complete:
            self._set_error("connection closed by the queen before the response ended")
        if self._transport is not None:
            self._transport.close()

    def _fail(self, message: str) -> None:
        self._set_error(message)
        self.close()

    def _set_error(self, message: str) -> None:
        if self.error is None:
            self.error = TransportError(message)
        if self._head is not None and not self._head.done():
            self._head.set_exception(self.error)
            self._head.exception()  # a request given up on awaits it no more: don't log
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class _Pool:
    """Idle keep-alive connections per worker address, the most recently used first."""

    def __init__(self, max_idle: int, keepalive: float) -> None:
        self._max_idle = max_idle
        self._keepalive = keepalive
        self._idle: dict[Address, list[_Connection]] = {}

    def take(self, address: Address) -> _Connection | None:
        idle = self._idle.get(address)
        # Dropped before the worker's own keep-alive timeout (5 s) closes them: a request
        # written on a connection the worker is closing fails, and is not retried.
        oldest = time.monotonic() - self._keepalive
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.idle_since > oldest:
                return conn
            conn.close()
        if idle is not None:  # emptied by stale connections: a worker gone leaves no entry
            del self._idle[address]
        return None

    def put(self, address: Address, conn: _Connection) -> None:
        idle = self._idle.setdefault(address, [])
        if len(idle) >= self._max_idle:
            conn.close()
            return
        conn.idle()
        idle.append(conn)

    def discard(self, address: Address, conn: _Connection) -> None:
        idle = self._idle.get(address)
        if idle is not None and conn in idle:
            idle.remove(conn)
            if not idle:
                del self._idle[address]  # a worker that is gone leaves nothing behind


class _HttptoolsUpstream:
    def __init__(self, pool: _Pool, address: Address, conn: _Connection, status: int) -> None:
        self._pool = pool
        self._address = address
        self._conn: _Connection | None = conn  # None once released or closed
        self._status = status

    @property
    def status(self) -> int:
        return self._status

    async def read(self) -> bytes:
        # Not through chunks(): an async generator per answer costs µs on the hot path.
        conn = self._connection()
        parts = []
        while chunk := await conn.next_chunk():
            parts.append(chunk)
        self.release()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def chunks(self) -> AsyncIterator[bytes]:
        conn = self._connection()  # kept: close() may detach it while this waits
        while chunk := await conn.next_chunk():
            yield chunk
        self.release()  # read to its end: as with aiohttp, the connection goes back

    def _connection(self) -> _Connection:
        if self._conn is None:
            raise TransportError("the response was closed")
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if conn.reusable():
            self._pool.put(self._address, conn)
        else:
            conn.close()  # a body left unread would be the next response's first bytes


class HttptoolsTransport:
    """Keep-alive connections per worker; the connect deadline here, the rest enforced by
    the relay (as for `AiohttpTransport`)."""

    def __init__(self, deadlines: Deadlines, *, keepalive: float = KEEPALIVE,
                 max_idle: int = MAX_IDLE) -> None:
        self._deadlines = deadlines
        self._pool = _Pool(max_idle, keepalive)
        # Probes have their own connections: never behind requests.
        self._probes = _Pool(2, keepalive)
        self._open: set[_Connection] = set()  # every live connection, for close()
        self._urls: dict[str, tuple[Address, str]] = {}  # parsed once: few workers, 2 paths

    async def open(self, url: str, body: Body, headers: Mapping[str, str]) -> Upstream:
        return await self._request(self._pool, "POST", url, body, headers)

    async def post(self, url: str, body: Body, headers: Mapping[str, str]
                   ) -> tuple[int, bytes]:
        return await read_whole(await self.open(url, body, headers))

    async def probe(self, url: str) -> bool:
        try:
            async with asyncio.timeout(self._deadlines.probe):
                upstream = await self._request(self._probes, "GET", url, b"", {})
                try:
                    await upstream.read()
                finally:
                    upstream.close()  # a no-op once read; drops a probe cut short
                return upstream.status == 200
        except (TransportError, TimeoutError):
            return False

    async def close(self) -> None:
        for conn in list(self._open):
            conn.close()

    async def _request(self, pool: _Pool, method: str, url: str, body: Body,
                       headers: Mapping[str, str]) -> _HttptoolsUpstream:
        split = self._urls.get(url)
        if split is None:
            if len(self._urls) > MAX_URLS:  # workers come and go: forget the old ones
                self._urls.clear()
            split = self._urls[url] = _split(url)
        address, target = split
        conn = pool.take(address) or await self._connect(address, pool)
        try:
            if isinstance(body, FileBody):
                head = conn.send(_head(method, target, address, headers, len(body)))
                await conn.write_body(body.chunks())
                status = await head
            else:
                status = await conn.send(_head(method, target, address, headers, len(body))
                                         + body)
        except BaseException:
            conn.close()  # no answer (cancelled, deadline, broken): the worker sees a hang-up
            raise
        return _HttptoolsUpstream(pool, address, conn, status)

    async def _connect(self, address: Address, pool: _Pool) -> _Connection:
        loop = asyncio.get_running_loop()

        def lost(conn: _Connection) -> None:
            self._open.discard(conn)
            pool.discard(address, conn)

        try:
            async with asyncio.timeout(self._deadlines.connect):
                _, conn = await loop.create_connection(lambda: _Connection(loop, lost),
                                                       *address)
        except TimeoutError as exc:  # before OSError: in 3.11 it is one
            raise TransportError(f"connect to {address[0]}:{address[1]}: no answer within "
                                 f"{self._deadlines.connect:g}s") from exc
        except OSError as exc:
            raise TransportError(f"connect to {address[0]}:{address[1]}: "
                                 f"{type(exc).__name__}: {exc}") from exc
        self._open.add(conn)
        return conn


def _split(url: str) -> tuple[Address, str]:
    """(host, port) and the request target of an http:// URL."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise TransportError(f"not a plain http:// worker URL: {url!r}")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return (parts.hostname, parts.port or 80), target


def _head(method: str, target: str, address: Address, headers: Mapping[str, str],
          length: int) -> bytes:
    host = f"[{address[0]}]" if ":" in address[0] else address[0]
    lines = [f"{method} {target} HTTP/1.1\r\nHost: {host}:{address[1]}\r\n"]
    if length or method == "POST":
        lines.append(f"Content-Length: {length}\r\n")
    for name, value in headers.items():
        if "\n" in value or "\r" in value:  # would end the header early: a second request
            raise ValueError(f"header {name} holds a line break")
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")
