"""Synchronous client of the queen: submit jobs, follow their streams, read history."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import httpx
from httpx_sse import EventSource, SSEError

from rbee.api.jobs import TERMINAL_EVENTS
from rbee.core.errors import RbeeError, UpstreamError, from_envelope


class QueenUnreachable(UpstreamError):
    """Nothing answers at the queen's URL."""


class JobFailed(RbeeError):
    """A job ended with an `error` or `cancelled` event."""

    def __init__(self, message: str, *, event: str, code: str | None = None) -> None:
        super().__init__(message)
        self.event = event
        self.code = code


@dataclass(frozen=True)
class StreamEvent:
    seq: int
    event: str
    data: dict[str, Any]


class BadStream(UpstreamError):
    """The queen's answer is not a job stream rbee can read."""


def job_events(response: httpx.Response) -> Iterator[StreamEvent]:
    """A job stream's events, parsed to the SSE spec by httpx-sse (multi-line `data:` fields
    joined with newlines, the last `id:` carried over); comments and keep-alives skipped."""
    try:
        for sse in EventSource(response).iter_sse():
            # After the first `id:`, a keep-alive comment's blank line yields an event with no
            # data (httpx-sse keeps the last id); the spec dispatches nothing for it.
            if sse.data:
                yield StreamEvent(_seq(sse.id), sse.event or "message", _json(sse.data))
    except SSEError as exc:
        raise BadStream(f"the queen did not answer with an event stream ({exc})") from None


def parse_sse(lines: Iterable[str]) -> Iterator[StreamEvent]:
    """The same for a stream already split into lines (`job_events` reads a response)."""
    body = (f"{line}\n".encode() for line in lines)
    yield from job_events(httpx.Response(200, headers=_SSE_HEADERS, content=body))


_SSE_HEADERS = {"content-type": "text/event-stream"}


def _seq(event_id: str) -> int:
    try:
        return int(event_id) if event_id else -1
    except ValueError:
        raise BadStream(f"event id {event_id!r} is not a number") from None


def _json(data: str) -> dict[str, Any]:
    try:
        found = json.loads(data)
    except ValueError:
        raise BadStream(f"an event's data is not JSON: {data[:80]!r}") from None
    if not isinstance(found, dict):
        raise BadStream(f"an event's data is not a JSON object: {data[:80]!r}")
    return found


STREAM_SILENCE = 45.0  # three missed keep-alives of a job stream: the queen is not answering


class QueenClient:
    def __init__(self, base_url: str, token: str | None = None, *,
                 transport: httpx.BaseTransport | None = None, timeout: float = 30.0,
                 stream_silence: float = STREAM_SILENCE) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        # Every call has a deadline: a queen that hangs (stopped, cut off) still accepts TCP
        # connections from its backlog, and would otherwise hold the CLI forever.
        self._http = httpx.Client(base_url=self.base_url, headers=headers, transport=transport,
                                  timeout=httpx.Timeout(timeout))
        # A job stream may be quiet for long, but the queen sends a keep-alive every 15 s.
        self._stream_timeout = httpx.Timeout(timeout, read=stream_silence)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> QueenClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            r = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise QueenUnreachable(f"queen not reachable at {self.base_url} ({exc}); "
                                   "start one with: rbee queen start") from exc
        body = r.json() if r.content else None
        if r.status_code >= 400:
            raise from_envelope(r.status_code, body)
        return body

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None,
              params: dict[str, str] | None = None) -> Any:
        """The admin API (/v1/admin/...): tenants, users, keys."""
        return self._request(method, f"/v1/admin{path}", json=body, params=params)

    def gdpr(self, method: str, path: str, body: dict[str, Any] | None = None,
             params: dict[str, str] | None = None) -> Any:
        """The GDPR API (/gdpr/...): export, delete, consent, receipts/verify."""
        return self._request(method, f"/gdpr{path}", json=body, params=params)

    def usage(self, params: dict[str, str], csv: bool = False) -> Any:
        """Usage rows (GET /v1/usage): parsed JSON, or the CSV text when `csv`."""
        if not csv:
            return self._request("GET", "/v1/usage", params=params)
        try:
            r = self._http.get("/v1/usage", params={**params, "format": "csv"})
        except httpx.TransportError as exc:
            raise QueenUnreachable(f"queen not reachable at {self.base_url} ({exc})") from exc
        if r.status_code >= 400:
            raise from_envelope(r.status_code, r.json() if r.content else None)
        return r.text

    def scheduler(self) -> dict[str, Any]:
        """Policies, the active script's counters, device memory, queues."""
        found: dict[str, Any] = self._request("GET", "/v1/scheduler")
        return found

    def health(self, timeout: float = 2.0) -> dict[str, Any] | None:
        """The queen's health report, or None when no queen answers. A queen with no hive up
        answers 503 with its report (status `unavailable`): it is running all the same."""
        try:
            r = self._http.get("/health", timeout=timeout)
        except httpx.TransportError:
            return None
        if r.status_code not in (200, 503):
            return None
        try:
            body = r.json()
        except ValueError:  # a 503 from something else (a proxy) on that address
            return None
        return body if isinstance(body, dict) and "status" in body else None

    def submit(self, operation: str, **fields: Any) -> str:
        body = {"operation": operation, **{k: v for k, v in fields.items() if v is not None}}
        return str(self._request("POST", "/v1/jobs", json=body)["job_id"])

    def speech(self, **fields: Any) -> Iterator[bytes]:
        """POST /v1/audio/speech: the audio as it streams in (an error answer raised)."""
        body = {k: v for k, v in fields.items() if v is not None}
        try:
            with self._http.stream("POST", "/v1/audio/speech", json=body,
                                   timeout=self._stream_timeout) as r:
                if r.status_code >= 400:
                    r.read()
                    raise from_envelope(r.status_code, r.json() if r.content else None)
                yield from r.iter_bytes()
        except httpx.TransportError as exc:
            raise QueenUnreachable(f"lost the queen at {self.base_url}: {exc}") from exc

    def transcribe(self, path: Path, fields: dict[str, str],
                   progress: Callable[[int, int], None] | None = None) -> httpx.Response:
        """POST /v1/audio/transcriptions with `path` uploaded from disk in chunks;
        `progress(sent, total)` as the upload goes. An error answer is raised."""
        total = path.stat().st_size
        try:
            with path.open("rb") as f:
                upload = _Counted(f, total, progress)
                r = self._http.post("/v1/audio/transcriptions", data=fields,
                                    # duck-typed: httpx only reads, seeks and tells
                                    files={"file": (path.name, upload)},  # type: ignore[dict-item]
                                    timeout=self._stream_timeout)
        except httpx.TransportError as exc:
            raise QueenUnreachable(f"lost the queen at {self.base_url}: {exc}") from exc
        if r.status_code >= 400:
            try:
                body = r.json()
            except ValueError:
                body = None
            raise from_envelope(r.status_code, body)
        return r

    def images(self, **fields: Any) -> Iterator[dict[str, Any]]:
        """POST /v1/images/generations as a stream: its events (per-step progress, then each
        image) as they come; an error answer or error event raised."""
        body = {k: v for k, v in fields.items() if v is not None} | {"stream": True}
        try:
            with self._http.stream("POST", "/v1/images/generations", json=body,
                                   timeout=self._stream_timeout) as r:
                if r.status_code >= 400:
                    r.read()
                    raise from_envelope(r.status_code, r.json() if r.content else None)
                for sse in EventSource(r).iter_sse():
                    if sse.data == "[DONE]":
                        return
                    event = json.loads(sse.data)
                    if "error" in event:
                        raise from_envelope(500, event)
                    yield event
        except httpx.TransportError as exc:
            raise QueenUnreachable(f"lost the queen at {self.base_url}: {exc}") from exc

    def download(self, path: str) -> Iterator[bytes]:
        """GET a binary result (an artifact's URL) as it streams in (an error raised)."""
        try:
            with self._http.stream("GET", path, timeout=self._stream_timeout) as r:
                if r.status_code >= 400:
                    r.read()
                    raise from_envelope(r.status_code, r.json() if r.content else None)
                yield from r.iter_bytes()
        except httpx.TransportError as exc:
            raise QueenUnreachable(f"lost the queen at {self.base_url}: {exc}") from exc

    def follow(self, job_id: str, after: int = -1) -> Iterator[StreamEvent]:
        """Events until the terminal one; reconnects with Last-Event-ID if the link drops."""
        last = after
        while True:
            headers = {"Last-Event-ID": str(last)}
            try:
                with self._http.stream("GET", f"/v1/jobs/{job_id}/stream", headers=headers,
                                       timeout=self._stream_timeout) as r:
                    if r.status_code >= 400:
                        r.read()
                        raise from_envelope(r.status_code, r.json())
                    for ev in job_events(r):
                        last = ev.seq
                        yield ev
                        if ev.event in TERMINAL_EVENTS:
                            return
            except httpx.RemoteProtocolError:
                continue  # dropped mid-stream: resume after the last event we saw
            except httpx.TransportError as exc:
                raise QueenUnreachable(f"lost the queen at {self.base_url}: {exc}") from exc
            return

    def run_events(self, job_id: str) -> Iterator[StreamEvent]:
        """Follow a job; an `error` or `cancelled` end raises JobFailed."""
        for ev in self.follow(job_id):
            if ev.event in ("error", "cancelled"):
                raise JobFailed(str(ev.data.get("message", ev.event)), event=ev.event,
                                code=ev.data.get("code"))
            yield ev

    def run(self, operation: str, **fields: Any) -> dict[str, Any]:
        """Submit and wait; the job's result, or JobFailed."""
        result: dict[str, Any] = {}
        for ev in self.run_events(self.submit(operation, **fields)):
            if ev.event == "result":
                result = ev.data
        return result

    def cancel(self, job_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self._request("DELETE", f"/v1/jobs/{job_id}")
        return found

    def job(self, job_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self._request("GET", f"/v1/jobs/{job_id}")
        return found

    def jobs(self, limit: int = 20, state: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if state:
            params["state"] = state
        found: list[dict[str, Any]] = self._request("GET", "/v1/jobs", params=params)["data"]
        return found

    def audit_entries(self, **filters: Any) -> dict[str, Any]:
        """A page of audit entries (filters: after, limit, action, outcome, tenant…)."""
        params = {k: v for k, v in filters.items() if v is not None}
        found: dict[str, Any] = self._request("GET", "/v1/admin/audit", params=params)
        return found

    def audit_verify(self, archives: bool = False) -> dict[str, Any]:
        """The queen's walk of its audit chain: `ok`, and the first entry that does not
        match."""
        found: dict[str, Any] = self._request("GET", "/v1/admin/audit/verify",
                                              params={"archives": archives})
        return found

    def audit_export(self, out: BinaryIO) -> int:
        """Stream the audit export (JSON lines, chain head first) into `out`; bytes written."""
        written = 0
        try:
            with self._http.stream("GET", "/v1/admin/audit/export",
                                   timeout=self._stream_timeout) as r:
                if r.status_code >= 400:
                    r.read()
                    raise from_envelope(r.status_code, r.json() if r.content else None)
                for chunk in r.iter_bytes():
                    out.write(chunk)
                    written += len(chunk)
        except httpx.TransportError as exc:
            raise QueenUnreachable(f"lost the queen at {self.base_url}: {exc}") from exc
        return written


class _Counted:
    """A file httpx reads in chunks for a multipart upload, counting what it has read."""

    def __init__(self, f: BinaryIO, total: int,
                 progress: Callable[[int, int], None] | None) -> None:
        self._f = f
        self._total = total
        self._progress = progress
        self._sent = 0

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        self._sent += len(data)
        if self._progress is not None:
            self._progress(self._sent, self._total)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        if offset == 0 and whence == 0:
            self._sent = 0  # httpx rewinds before sending (and to measure the length)
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()
