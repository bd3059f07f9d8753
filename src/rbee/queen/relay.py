"""The hot path: pass an OpenAI request to a worker and its answer back, bytes unchanged.

Queen→worker calls use aiohttp rather than httpx: measured on this path (bench/
queen_overhead.py) a keep-alive round trip costs ~0.75 ms less, which is most of the latency
budget the queen may add. A client that hangs up closes the upstream connection, and the
worker stops generating.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import httptools
from starlette.responses import Response

from rbee.api import sse
from rbee.api.cluster import WorkerInfo
from rbee.core.errors import WorkerUnavailable, WorkerUnreachable, from_envelope
from rbee.queen.credentials import Credentials
from rbee.queen.registry import Registry
from rbee.queen.upstream import LeanClient
from rbee.web.streaming import DisconnectAwareStream

# No total timeout: a generation may legitimately stream for minutes.
_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=10.0, sock_connect=10.0)


@contextlib.contextmanager
def map_worker_errors(worker: WorkerInfo) -> Iterator[None]:
    """Transport failures become WorkerUnreachable, chained, once, here.

    Callers that have not yet passed anything to their client retry those on another
    worker (`queen.failover`); a stream already under way ends with an error frame instead.
    """
    try:
        yield
    except TimeoutError as exc:
        raise WorkerUnreachable(f"worker {worker.id}: timed out") from exc
    except (aiohttp.ClientError, OSError, httptools.HttpParserError) as exc:
        raise WorkerUnreachable(f"worker {worker.id}: {type(exc).__name__}: {exc}") from exc


class Relay:
    def __init__(self, registry: Registry, credentials: Credentials) -> None:
        self._registry = registry
        self._credentials = credentials
        self._session: aiohttp.ClientSession | None = None
        self._lean = LeanClient({"Content-Type": "application/json"})

    def _headers(self, worker: WorkerInfo) -> dict[str, str]:
        auth = self._credentials.worker_auth(worker.hive_id)
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = auth
        return headers

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use: a session must be made inside the running event loop.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=1024, limit_per_host=256,
                                             keepalive_timeout=30.0)
            # Workers set no cookies: a dummy jar skips cookie filtering on every request.
            self._session = aiohttp.ClientSession(connector=connector, timeout=_TIMEOUT,
                                                  auto_decompress=False,
                                                  cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    async def close(self) -> None:
        self._lean.close()
        if self._session is not None:
            await self._session.close()

    async def _open(self, worker: WorkerInfo, path: str, data: bytes
                    ) -> aiohttp.ClientResponse:
        with map_worker_errors(worker):
            return await self._client().post(worker.url + path, data=data,
                                             headers=self._headers(worker))

    async def forward(self, worker: WorkerInfo, path: str, raw: bytes, stream: bool,
                      on_close: Callable[[], None] | None = None) -> Response:
        """`on_close` runs when a stream ends (however it ends); the caller handles the
        non-streamed case and the errors raised here."""
        if not stream:
            return await self._forward_whole(worker, path, raw)
        self._registry.acquire(worker.id)
        handed_over = False
        try:
            upstream = await self._open(worker, path, raw)
            if upstream.status != 200:
                with map_worker_errors(worker):
                    body = await upstream.read()
                upstream.release()
                raise from_envelope(upstream.status, _json(body))
            handed_over = True  # the stream releases the worker when it ends
            finish = _once(lambda: self._finish(worker, upstream, on_close))
            return DisconnectAwareStream(self._pipe(worker, upstream, finish), on_close=finish)
        finally:
            if not handed_over:
                self._registry.release(worker.id)

    async def _forward_whole(self, worker: WorkerInfo, path: str, raw: bytes) -> Response:
        self._registry.acquire(worker.id)
        try:
            with map_worker_errors(worker):
                status, body = await self._lean.post(
                    worker.url + path, raw, self._credentials.worker_auth(worker.hive_id))
        finally:
            self._registry.release(worker.id)
        return Response(body, status, media_type="application/json")

    async def _pipe(self, worker: WorkerInfo, upstream: aiohttp.ClientResponse,
                    on_close: Callable[[], None] | None) -> AsyncIterator[bytes]:
        finished = False
        try:
            async for chunk in upstream.content.iter_any():
                yield chunk
            finished = True
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Headers are gone: the error becomes a frame, then [DONE].
            err = WorkerUnavailable(f"worker {worker.id} failed mid-stream: {type(exc).__name__}")
            yield sse.data_frame(err.to_envelope())
            yield sse.DONE
        finally:
            if finished:
                upstream.release()
            else:
                upstream.close()  # drop the connection: the worker sees the disconnect
            if on_close is not None:
                on_close()

    def _finish(self, worker: WorkerInfo, upstream: aiohttp.ClientResponse,
                 on_close: Callable[[], None] | None) -> None:
        upstream.close()  # a no-op after the body released it; drops it if never read
        self._registry.release(worker.id)
        if on_close is not None:
            on_close()

    async def stream_events(self, worker: WorkerInfo, body: dict[str, Any]
                            ) -> AsyncIterator[dict[str, Any]]:
        """Stream a chat completion from a worker as parsed chunks (for the job API)."""
        self._registry.acquire(worker.id)
        upstream = None
        finished = False
        try:
            upstream = await self._open(worker, "/v1/chat/completions", json.dumps(body).encode())
            with map_worker_errors(worker):
                if upstream.status != 200:
                    raise from_envelope(upstream.status, _json(await upstream.read()))
                async for raw_line in upstream.content:
                    data = sse.parse_data_line(raw_line.decode().rstrip("\r\n"))
                    if data is None or data == "[DONE]":
                        continue
                    chunk = json.loads(data)
                    if "error" in chunk:
                        raise from_envelope(500, chunk)
                    yield chunk
            finished = True
        finally:
            if upstream is not None:
                if finished:
                    upstream.release()
                else:
                    upstream.close()
            self._registry.release(worker.id)


def _once(fn: Callable[[], None]) -> Callable[[], None]:
    """A stream ends through its body's `finally` or its response's: release exactly once."""
    done = False

    def call() -> None:
        nonlocal done
        if not done:
            done = True
            fn()

    return call


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
