"""Synchronous client of the queen: submit jobs, follow their streams, read history."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

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


def parse_sse(lines: Iterator[str]) -> Iterator[StreamEvent]:
    """Job-stream frames (`id:`, `event:`, `data:`); comments and keep-alives are skipped."""
    seq, event, data = -1, "message", ""
    for line in lines:
        if not line:
            if data:
                yield StreamEvent(seq, event, json.loads(data))
            seq, event, data = -1, "message", ""
        elif line.startswith("id:"):
            seq = int(line[3:].strip())
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()


class QueenClient:
    def __init__(self, base_url: str, token: str | None = None, *,
                 transport: httpx.BaseTransport | None = None, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=headers, transport=transport,
                                  timeout=httpx.Timeout(timeout, read=None))

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

    def follow(self, job_id: str, after: int = -1) -> Iterator[StreamEvent]:
        """Events until the terminal one; reconnects with Last-Event-ID if the link drops."""
        last = after
        while True:
            headers = {"Last-Event-ID": str(last)}
            try:
                with self._http.stream("GET", f"/v1/jobs/{job_id}/stream", headers=headers) as r:
                    if r.status_code >= 400:
                        r.read()
                        raise from_envelope(r.status_code, r.json())
                    for ev in parse_sse(r.iter_lines()):
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
