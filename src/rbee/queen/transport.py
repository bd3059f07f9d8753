"""Queen→worker HTTP: one transport for every call, deadlines built in.

The relay talks to workers only through `WorkerTransport`, so tests drive it with a fake one
(milliseconds, no processes) and the deadlines below live in one place. Two real transports
hold the same contract (tests/unit/queen/test_transport.py runs it against both): the queen
uses `transport_httptools.HttptoolsTransport` by default, ~0.1 ms cheaper per round trip
than `AiohttpTransport` below (bench/queen_overhead.py), which stays as the general-purpose
alternative (QueenSettings.worker_transport). Both were measured far cheaper than httpx's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp

KEEPALIVE = 4.0  # seconds an idle connection to a worker is kept (workers close theirs at 5)


class TransportError(ConnectionError):
    """The worker could not be reached, or the connection broke: a library's error, once."""


@dataclass(frozen=True)
class Deadlines:
    """How long the queen waits on a worker (seconds). Each one ends a call that hangs."""

    connect: float = 3.0  # open a TCP connection (workers are on the LAN or loopback)
    first_byte: float = 300.0  # a stream's headers and its first data frame
    idle: float = 120.0  # the longest silence between a stream's data frames
    response: float = 600.0  # a whole non-streamed answer
    probe: float = 1.0  # a liveness probe (GET /health)


FILE_CHUNK = 256 * 1024  # bytes read from an uploaded file at a time


@dataclass(frozen=True)
class FilePart:
    """A further file of a FileBody, and the bytes sent after it."""

    path: Path
    size: int
    tail: bytes = b""


@dataclass(frozen=True)
class FileBody:
    """A request body sent from files on disk, never held whole in memory: `head`, the
    file's `size` bytes, `tail`, then each of `more` (a multipart form around its uploads).
    Each send reads the files from their start, so a failover re-sends the body whole."""

    path: Path
    size: int
    content_type: str
    head: bytes = b""
    tail: bytes = b""
    more: tuple[FilePart, ...] = ()

    def __len__(self) -> int:
        return (len(self.head) + self.size + len(self.tail)
                + sum(part.size + len(part.tail) for part in self.more))

    async def chunks(self) -> AsyncIterator[bytes]:
        yield self.head
        for part in (FilePart(self.path, self.size, self.tail), *self.more):
            async for chunk in file_chunks(part.path, part.size):
                yield chunk
            yield part.tail


async def file_chunks(path: Path, size: int) -> AsyncIterator[bytes]:
    """The first `size` bytes of a file, a chunk at a time; TransportError if it is shorter."""
    left = size
    # Reads on a thread: a disk under load must not stall the event loop.
    with await asyncio.to_thread(path.open, "rb") as f:
        while left > 0:
            chunk = await asyncio.to_thread(f.read, min(FILE_CHUNK, left))
            if not chunk:
                raise TransportError(f"{path.name} is shorter than {size} bytes")
            left -= len(chunk)
            yield chunk


Body = bytes | FileBody  # what a request to a worker sends


def content_type(body: Body, default: str) -> str:
    return body.content_type if isinstance(body, FileBody) else default


class Upstream(Protocol):
    """One worker response whose body is still to be read."""

    @property
    def status(self) -> int: ...

    async def read(self) -> bytes: ...

    def chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive; raises TransportError if the connection breaks."""
        ...

    def close(self) -> None:
        """Drop the connection (the worker sees a hang-up and stops generating)."""
        ...

    def release(self) -> None:
        """The body was read to its end: the connection may be reused."""
        ...


class WorkerTransport(Protocol):
    async def open(self, url: str, body: Body, headers: Mapping[str, str]) -> Upstream:
        """POST and return once the response headers are in (TransportError otherwise).
        A FileBody streams from disk with its Content-Length; a worker that answers before
        reading all of it gets the rest no more (and the connection is not reused)."""
        ...

    async def post(self, url: str, body: Body, headers: Mapping[str, str]
                   ) -> tuple[int, bytes]:
        """POST and read the whole answer."""
        ...

    async def probe(self, url: str) -> bool:
        """GET `url`; True when it answered 200 within the probe deadline."""
        ...

    async def close(self) -> None: ...


async def read_whole(upstream: Upstream) -> tuple[int, bytes]:
    """Status and whole body; the connection goes back to the pool only if it was read to its
    end (cancelled or broken mid-answer: closed, never reused)."""
    try:
        data = await upstream.read()
    except BaseException:
        upstream.close()
        raise
    upstream.release()
    return upstream.status, data


class _AiohttpUpstream:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except (aiohttp.ClientError, OSError) as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, OSError) as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        self._response.close()

    def release(self) -> None:
        self._response.release()


class AiohttpTransport:
    """Keep-alive pools per worker; connect deadline here, the rest enforced by the relay
    (a stream's idle deadline must ignore keep-alive comments, which a socket timeout can't)."""

    def __init__(self, deadlines: Deadlines, *, keepalive: float = KEEPALIVE) -> None:
        self._deadlines = deadlines
        self._keepalive = keepalive
        self._session: aiohttp.ClientSession | None = None
        self._probes: aiohttp.ClientSession | None = None

    def _new_session(self, per_host: int) -> aiohttp.ClientSession:
        # Idle connections are dropped before a worker's own keep-alive timeout (5 s) closes
        # them: a POST on a connection the worker is closing fails, and is not retried.
        connector = aiohttp.TCPConnector(limit=1024, limit_per_host=per_host,
                                         keepalive_timeout=self._keepalive)
        d = self._deadlines
        timeout = aiohttp.ClientTimeout(total=None, connect=d.connect, sock_connect=d.connect)
        # Workers set no cookies: a dummy jar skips cookie filtering on every request.
        return aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar())

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use: a session must be made inside the running event loop.
        if self._session is None or self._session.closed:
            self._session = self._new_session(per_host=256)
        return self._session

    def _prober(self) -> aiohttp.ClientSession:
        # Probes have their own pool: a worker whose request pool is full must still answer.
        if self._probes is None or self._probes.closed:
            self._probes = self._new_session(per_host=2)
        return self._probes

    async def open(self, url: str, body: Body, headers: Mapping[str, str]) -> Upstream:
        data: bytes | AsyncIterator[bytes]
        if isinstance(body, FileBody):
            # An explicit length: aiohttp would send an iterator chunked otherwise.
            headers = {**headers, "Content-Length": str(len(body))}
            data = body.chunks()
        else:
            data = body
        try:
            response = await self._client().post(url, data=data, headers=headers)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        return _AiohttpUpstream(response)

    async def post(self, url: str, body: Body, headers: Mapping[str, str]
                   ) -> tuple[int, bytes]:
        return await read_whole(await self.open(url, body, headers))

    async def probe(self, url: str) -> bool:
        try:
            async with asyncio.timeout(self._deadlines.probe):
                async with self._prober().get(url) as response:
                    await response.read()
                    return response.status == 200
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    async def close(self) -> None:
        for session in (self._session, self._probes):
            if session is not None:
                await session.close()
