"""Calls from the queen to a hive's lifecycle API (authenticated)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx

from rbee.api.cluster import Device, SpawnWorker, WorkerInfo
from rbee.core.errors import UpstreamError, from_envelope
from rbee.models.catalog import public_model
from rbee.queen.credentials import Credentials

if TYPE_CHECKING:
    from rbee.tracing.tracer import ClientSpan, Tracing


@contextlib.contextmanager
def map_transport_errors(what: str) -> Iterator[None]:
    """httpx failures become UpstreamError, chained (httpx's own map_httpcore_exceptions)."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise UpstreamError(f"{what}: timed out") from exc
    except httpx.TransportError as exc:
        raise UpstreamError(f"{what}: {type(exc).__name__}: {exc}") from exc


class HiveClient:
    """Each call carries the secret of the hive it goes to (`Credentials`)."""

    def __init__(self, http: httpx.AsyncClient, credentials: Credentials,
                 tracing: Tracing | None = None) -> None:
        self._http = http
        self._credentials = credentials
        self._tracing = tracing

    async def _call(self, hive_id: str, method: str, url: str,
                    json: dict[str, Any] | None = None, span: ClientSpan | None = None) -> Any:
        auth = self._credentials.hive_auth(hive_id)
        headers = {"Authorization": auth} if auth else {}
        if span is not None:  # the hive's span joins the request's trace
            span.inject(headers)
        with map_transport_errors(f"hive {hive_id} at {url}"):
            r = await self._http.request(method, url, json=json, headers=headers, timeout=30.0)
        if span is not None:
            span.answered(r.status_code)
        body = r.json() if r.content else None
        if r.status_code >= 400:
            raise from_envelope(r.status_code, body)
        return body

    async def spawn(self, hive_id: str, hive_url: str, spec: SpawnWorker) -> WorkerInfo:
        span = None
        if self._tracing is not None:  # under the request that needed the worker, if any
            span = self._tracing.client("POST /v1/workers", {
                "url.path": "/v1/workers", "rbee.hive.id": hive_id,
                "rbee.model": public_model(spec.model),
                "rbee.device": spec.device})
        try:
            body = await self._call(hive_id, "POST", f"{hive_url}/v1/workers",
                                    spec.model_dump(exclude_none=True), span)
        except BaseException as exc:
            if span is not None:
                span.raised(exc)
            raise
        finally:
            if span is not None:
                span.end()
        return WorkerInfo.model_validate(body)

    async def get_worker(self, hive_id: str, hive_url: str, worker_id: str) -> WorkerInfo:
        body = await self._call(hive_id, "GET", f"{hive_url}/v1/workers/{worker_id}")
        return WorkerInfo.model_validate(body)

    async def stop_worker(self, hive_id: str, hive_url: str, worker_id: str) -> WorkerInfo:
        body = await self._call(hive_id, "DELETE", f"{hive_url}/v1/workers/{worker_id}")
        return WorkerInfo.model_validate(body)

    async def devices(self, hive_id: str, hive_url: str) -> list[Device]:
        body = await self._call(hive_id, "GET", f"{hive_url}/v1/capabilities")
        return [Device.model_validate(d) for d in body["devices"]]
