"""The hot path: pass an OpenAI request to a worker and its answer back, bytes unchanged.

A client that hangs up closes the upstream stream, and the worker stops generating.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.responses import Response

from rbee.api import sse
from rbee.api.cluster import WorkerInfo
from rbee.core.errors import UpstreamError, WorkerUnavailable, from_envelope
from rbee.queen.hive_client import map_transport_errors
from rbee.queen.registry import Registry
from rbee.web.streaming import DisconnectAwareStream


class Relay:
    def __init__(self, http: httpx.AsyncClient, registry: Registry, token: str | None) -> None:
        self._http = http
        self._registry = registry
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        if token is None:
            del self._headers["Authorization"]

    async def forward(self, worker: WorkerInfo, path: str, raw: bytes, stream: bool) -> Response:
        url = worker.url + path
        self._registry.acquire(worker.id)
        released = False
        try:
            request = self._http.build_request("POST", url, content=raw, headers=self._headers,
                                               timeout=httpx.Timeout(10.0, read=None))
            with map_transport_errors(f"worker {worker.id}"):
                upstream = await self._http.send(request, stream=stream)
            if not stream:
                return Response(upstream.content, upstream.status_code,
                                media_type="application/json")
            if upstream.status_code != 200:
                await upstream.aread()
                await upstream.aclose()
                raise from_envelope(upstream.status_code, _json(upstream.content))
            released = True  # the stream releases when it ends
            return DisconnectAwareStream(self._pipe(worker, upstream))
        finally:
            if not released:
                self._registry.release(worker.id)

    async def _pipe(self, worker: WorkerInfo, upstream: httpx.Response) -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        except httpx.HTTPError as exc:
            # Headers are gone: the error becomes a frame, then [DONE].
            err = WorkerUnavailable(f"worker {worker.id} failed mid-stream: {type(exc).__name__}")
            yield sse.data_frame(err.to_envelope())
            yield sse.DONE
        finally:
            await upstream.aclose()
            self._registry.release(worker.id)

    async def stream_events(self, worker: WorkerInfo, body: dict[str, Any]
                            ) -> AsyncIterator[dict[str, Any]]:
        """Stream a chat completion from a worker as parsed chunks (for the job API)."""
        self._registry.acquire(worker.id)
        try:
            with map_transport_errors(f"worker {worker.id}"):
                async with self._http.stream(
                        "POST", worker.url + "/v1/chat/completions", json=body,
                        headers=self._headers, timeout=httpx.Timeout(10.0, read=None)) as r:
                    if r.status_code != 200:
                        await r.aread()
                        raise from_envelope(r.status_code, _json(r.content))
                    async for line in r.aiter_lines():
                        data = sse.parse_data_line(line)
                        if data is None or data == "[DONE]":
                            continue
                        chunk = json.loads(data)
                        if "error" in chunk:
                            raise from_envelope(500, chunk)
                        yield chunk
        finally:
            self._registry.release(worker.id)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


__all__ = ["Relay", "UpstreamError"]
