"""A lean keep-alive HTTP/1.1 client for the queen's non-streamed relays to workers.

Why not aiohttp here: on this path the queen may add 0.5 ms in all, and aiohttp's request
machinery (tracing hooks, cookie and proxy handling, header multidicts) measured ~0.23 ms of
it (docs/benchmarks.md §1). Workers are our own processes on known addresses speaking plain
HTTP/1.1, so this client only writes one POST and parses the answer with httptools (the
parser uvicorn uses). Streams stay on aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httptools

_READ = 65536


class UpstreamClosed(ConnectionError):
    """The worker closed the connection before a whole response arrived."""


@dataclass
class _Response:
    body: list[bytes] = field(default_factory=list)
    done: bool = False
    keep_alive: bool = False
    parser: httptools.HttpResponseParser | None = None

    # httptools callbacks
    def on_headers_complete(self) -> None:
        # Asked here: once the message is complete the parser has reset and says False.
        assert self.parser is not None
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, data: bytes) -> None:
        self.body.append(data)

    def on_message_complete(self) -> None:
        self.done = True


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def close(self) -> None:
        self.writer.close()


class LeanClient:
    def __init__(self, headers: dict[str, str], max_idle_per_host: int = 32) -> None:
        self._headers = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._max_idle = max_idle_per_host

    async def post(self, url: str, body: bytes, authorization: str | None = None
                   ) -> tuple[int, bytes]:
        """POST `body`; (status, body). A reused connection the worker had closed is retried."""
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        auth = f"Authorization: {authorization}\r\n" if authorization else ""
        head = (f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n{self._headers}"
                f"{auth}Content-Length: {len(body)}\r\n\r\n").encode() + body
        pool = self._idle.setdefault((host, port), [])
        while True:
            reused = bool(pool)
            conn = pool.pop() if reused else await self._connect(host, port)
            try:
                status, answer, keep = await self._exchange(conn, head)
            except UpstreamClosed:
                conn.close()
                if reused:
                    continue  # an idle keep-alive connection the worker closed: try another
                raise
            except BaseException:
                conn.close()  # cancelled or failed mid-exchange: the worker sees a hang-up
                raise
            if keep and len(pool) < self._max_idle:
                pool.append(conn)
            else:
                conn.close()
            return status, answer

    async def _connect(self, host: str, port: int) -> _Connection:
        reader, writer = await asyncio.open_connection(host, port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _Connection(reader, writer)

    async def _exchange(self, conn: _Connection, request: bytes) -> tuple[int, bytes, bool]:
        conn.writer.write(request)
        response = _Response()
        parser = response.parser = httptools.HttpResponseParser(response)
        while not response.done:
            data = await conn.reader.read(_READ)
            if not data:
                raise UpstreamClosed("connection closed by the worker")
            parser.feed_data(data)
        return parser.get_status_code(), b"".join(response.body), response.keep_alive

    def close(self) -> None:
        for pool in self._idle.values():
            for conn in pool:
                with contextlib.suppress(Exception):
                    conn.close()
        self._idle.clear()
