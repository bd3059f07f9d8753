"""The hot path: pass an OpenAI request to a worker and its answer back, bytes unchanged.

Every call has deadlines (`transport.Deadlines`): a connect timeout, a first-byte deadline
(a stream's headers and first data frame), an idle deadline between data frames, a bound on
a whole non-streamed answer, and the client's own deadline, which also travels to the worker
(`DEADLINE_HEADER`). A worker that stops answering probes (`queen.liveness`) has its calls
aborted. A call that has sent nothing to its client raises `WorkerUnreachable` (the caller
fails over); a stream already under way ends with an error frame and `[DONE]`. A client that
hangs up closes the upstream connection, and the worker stops generating.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from rbee.api import sse
from rbee.api.cluster import DEADLINE_HEADER, WorkerInfo
from rbee.core.errors import (
    DeadlineExceeded,
    RbeeError,
    WorkerNotReady,
    WorkerUnavailable,
    WorkerUnreachable,
    from_envelope,
)
from rbee.queen.calls import DEADLINE, NO_DEADLINE, STALLED, Call, Calls, ClientDeadline, Watch
from rbee.queen.credentials import Credentials
from rbee.queen.registry import Registry
from rbee.queen.transport import (
    Body,
    Deadlines,
    TransportError,
    Upstream,
    WorkerTransport,
    content_type,
)
from rbee.web.streaming import DisconnectAwareStream

if TYPE_CHECKING:
    from rbee.tracing.tracer import Tracing

CUT_GRACE = 5.0  # seconds a cut stream has to deliver its error frame before it is ended
# What makes a response's body from a worker stream: (worker, call, upstream, watch, finish).
Pipe = Callable[[WorkerInfo, Call, Upstream, Watch, Callable[[], None]], AsyncIterator[bytes]]


class Relay:
    def __init__(self, registry: Registry, credentials: Credentials, transport: WorkerTransport,
                 deadlines: Deadlines, tracing: Tracing | None = None) -> None:
        self._registry = registry
        self._tracing = tracing  # None: off, and nothing below costs more than that test
        self._credentials = credentials
        self._transport = transport
        self._deadlines = deadlines
        self.calls = Calls()

    async def close(self) -> None:
        await self._transport.close()

    def _headers(self, worker: WorkerInfo, until: float | None, body: Body,
                 call: Call) -> dict[str, str]:
        headers = {"Content-Type": content_type(body, "application/json")}
        if call.span is not None:  # the worker's spans join the request's trace
            call.span.inject(headers)
        auth = self._credentials.worker_auth(worker.hive_id)
        if auth:
            headers["Authorization"] = auth
        if until is not None:
            left = max(until - asyncio.get_running_loop().time(), 0.001)
            headers[DEADLINE_HEADER] = f"{left:.3f}"
        return headers

    async def forward(self, worker: WorkerInfo, path: str, raw: Body, stream: bool,
                      on_close: Callable[[], None] | None = None,
                      deadline: ClientDeadline = NO_DEADLINE,
                      media_type: str = "application/json") -> Response:
        """`on_close` runs when a stream ends (however it ends); the caller handles the
        non-streamed case and the errors raised. `media_type`: a whole answer's (an error
        answer is JSON whatever it is)."""
        if not stream:
            status, body = await self._call_whole(worker, path, raw, deadline)
            return Response(body, status, media_type=media_type if status == 200
                            else "application/json")
        return await self.stream_through(worker, path, raw, self._pipe, on_close=on_close,
                                         deadline=deadline)

    async def stream_through(self, worker: WorkerInfo, path: str, raw: Body, pipe: Pipe, *,
                             media_type: str = "text/event-stream",
                             on_close: Callable[[], None] | None = None,
                             deadline: ClientDeadline = NO_DEADLINE) -> Response:
        """A worker's stream passed on as `pipe` makes it (SSE: `_pipe`; raw bytes:
        `queen.audio`), under the stream deadlines; `on_close` runs once it ends, however."""
        call, upstream, watch = await self._open_stream(worker, path, raw, deadline)
        finish = _once(lambda: self._end(call, upstream, watch, on_close))
        response = DisconnectAwareStream(pipe(worker, call, upstream, watch, finish),
                                         media_type=media_type, on_close=finish)
        loop = asyncio.get_running_loop()

        def cut() -> None:
            # The pipe now ends with an error frame. A client that stopped reading (its
            # connection open, its window shut) would block that send, and keep the worker
            # and the admission slot, forever: the response itself ends if it hasn't soon.
            upstream.close()
            loop.call_later(CUT_GRACE, response.abort)

        call.streaming(cut)
        return response

    async def _call_whole(self, worker: WorkerInfo, path: str, raw: Body,
                          deadline: ClientDeadline) -> tuple[int, bytes]:
        now = asyncio.get_running_loop().time()
        ours = now + self._deadlines.response
        theirs = deadline.by(now)
        call = self._begin(worker, path)
        try:
            async with call.waiting(_earliest(ours, theirs)):
                status, body = await self._transport.post(
                    worker.url + path, raw, self._headers(worker, deadline.until, raw, call))
            if call.span is not None:
                call.span.answered(status)
        except (TimeoutError, TransportError) as exc:
            if call.span is not None:
                call.span.raised(exc)
            if isinstance(exc, TransportError):
                raise WorkerUnreachable(f"worker {worker.id}: {exc}") from exc
            client_first = theirs is not None and theirs <= ours
            # A live worker still generating after `response` seconds: not retried elsewhere
            # (that would run the whole generation again); one liveness ended is.
            raise self._timed_out(worker, call, client_first, self._deadlines.response,
                                  retry=False) from exc
        finally:
            self._done(call)
        if status == 503:
            raise _refusal(worker, status, body)  # not ready after all: another worker
        return status, body

    async def _open_stream(self, worker: WorkerInfo, path: str, raw: Body,
                          deadline: ClientDeadline) -> tuple[Call, Upstream, Watch]:
        """POST and wait for the headers; then the stream is watched for progress."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        first = now + self._deadlines.first_byte
        theirs = deadline.by(now)
        call = self._begin(worker, path)
        try:
            async with call.waiting(_earliest(first, theirs)):
                upstream = await self._transport.open(
                    worker.url + path, raw, self._headers(worker, deadline.until, raw, call))
                if call.span is not None:
                    call.span.answered(upstream.status)
                if upstream.status != 200:
                    try:
                        body = await upstream.read()
                    finally:
                        upstream.close()  # an error answer: never worth reusing
                    raise _refusal(worker, upstream.status, body)
        except BaseException as exc:  # not handed over: the call ends here, whatever ended it
            if call.span is not None:
                call.span.raised(exc)
            self._done(call)
            if isinstance(exc, TimeoutError):
                raise self._timed_out(worker, call, theirs is not None and theirs <= first,
                                      self._deadlines.first_byte) from exc
            if isinstance(exc, TransportError):
                raise WorkerUnreachable(f"worker {worker.id}: {exc}") from exc
            raise
        # Headers are in: from now on the stream is cut (not failed over) when it stalls.
        idle = _earliest(self._deadlines.idle, deadline.read)
        watch = Watch(loop, call.abort, first=_earliest(first - loop.time(), deadline.read),
                      idle=idle, until=deadline.until)
        call.streaming(upstream.close)  # forward() adds ending the response to that
        return call, upstream, watch

    def _begin(self, worker: WorkerInfo, path: str) -> Call:
        self._registry.acquire(worker.id)
        call = self.calls.add(worker.id, worker.url)
        if self._tracing is not None:
            call.span = self._tracing.client(f"POST {path}", {
                "url.path": path, "rbee.worker.id": worker.id, "rbee.hive.id": worker.hive_id})
        return call

    def _done(self, call: Call) -> None:
        self.calls.untrack(call)
        self._registry.release(call.worker_id)
        if call.span is not None:  # a stream's ends with the stream
            call.span.end(call.reason)

    def _timed_out(self, worker: WorkerInfo, call: Call, client_deadline: bool,
                   limit: float, retry: bool = True) -> RbeeError:
        if call.reason is not None:  # aborted: the worker stopped answering
            return WorkerUnreachable(f"worker {worker.id}: {call.reason}")
        if client_deadline:
            return DeadlineExceeded("the request's deadline passed before the worker answered")
        cls = WorkerUnreachable if retry else WorkerUnavailable
        return cls(f"worker {worker.id}: no answer within {limit:g}s")

    def _stream_error(self, worker: WorkerInfo, call: Call, detail: str) -> RbeeError:
        if call.reason == DEADLINE:
            return DeadlineExceeded("the request's deadline passed mid-stream")
        if call.reason == STALLED:
            return WorkerUnavailable(f"worker {worker.id} stopped sending tokens "
                                     "(idle deadline passed)")
        if call.reason is not None:
            return WorkerUnavailable(f"worker {worker.id} failed mid-stream: {call.reason}")
        return WorkerUnavailable(f"worker {worker.id} failed mid-stream: {detail}")

    async def _pipe(self, worker: WorkerInfo, call: Call, upstream: Upstream, watch: Watch,
                    finish: Callable[[], None]) -> AsyncIterator[bytes]:
        ended = False
        try:
            async for chunk in upstream.chunks():
                if b"data:" in chunk:  # keep-alive comments are not progress
                    watch.progress()
                yield chunk
                ended = chunk.endswith(sse.DONE)
            if not ended:  # cut by a deadline or an abort, or the worker just closed
                err = self._stream_error(worker, call, "the stream ended early")
                yield sse.data_frame(err.to_envelope())
                yield sse.DONE
        except TransportError as exc:
            if not ended:  # headers are gone: the error becomes a frame, then [DONE]
                yield sse.data_frame(self._stream_error(worker, call, str(exc)).to_envelope())
                yield sse.DONE
        finally:
            finish()

    sse_pipe = _pipe  # what `forward` streams with: wrapped by queen.metering

    def _end(self, call: Call, upstream: Upstream, watch: Watch,
             on_close: Callable[[], None] | None) -> None:
        watch.cancel()
        upstream.close()  # a no-op after the body was read; drops it if it never was
        rate = watch.rate()
        if rate is not None:
            self._registry.observed_rate(call.worker_id, rate)
        self._done(call)
        if on_close is not None:
            on_close()

    async def call_json(self, worker: WorkerInfo, path: str, body: dict[str, Any],
                        deadline: ClientDeadline = NO_DEADLINE) -> dict[str, Any]:
        """A whole (not streamed) answer for the job API, parsed; an error answer raised."""
        status, raw = await self._call_whole(worker, path, json.dumps(body).encode(), deadline)
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        if status != 200 or not isinstance(answer, dict):
            raise from_envelope(status, answer)
        return answer

    async def stream_events(self, worker: WorkerInfo, body: dict[str, Any],
                            deadline: ClientDeadline = NO_DEADLINE,
                            on_cut: Callable[[], None] | None = None,
                            path: str = "/v1/chat/completions"
                            ) -> AsyncGenerator[dict[str, Any], None]:
        """Stream a worker's SSE answer (a chat completion unless `path` says otherwise) as
        parsed chunks (the job API, Responses, videos).

        `on_cut` runs when the stream is cut (a stall, the client's deadline, liveness), for a
        caller whose own client may have stopped reading: see `forward`'s `cut`."""
        raw = json.dumps(body).encode()
        call, upstream, watch = await self._open_stream(worker, path, raw, deadline)
        if on_cut is not None:
            def cut() -> None:
                upstream.close()
                on_cut()

            call.streaming(cut)
        try:
            async for data in _sse_data(upstream.chunks()):
                watch.progress()
                if data == "[DONE]":
                    return
                chunk = json.loads(data)
                if "error" in chunk:
                    raise from_envelope(500, chunk)
                yield chunk
            raise _unreachable(self._stream_error(worker, call, "the stream ended early"))
        except TransportError as exc:
            raise _unreachable(self._stream_error(worker, call, str(exc))) from exc
        finally:
            self._end(call, upstream, watch, None)

    async def stream_bytes(self, worker: WorkerInfo, path: str, body: dict[str, Any],
                           deadline: ClientDeadline = NO_DEADLINE
                           ) -> AsyncGenerator[bytes, None]:
        """A worker's binary answer as it arrives (a finished video), under the stream
        deadlines; a cut or broken transfer raises WorkerUnavailable, never a short end."""
        raw = json.dumps(body).encode()
        call, upstream, watch = await self._open_stream(worker, path, raw, deadline)
        try:
            async for chunk in upstream.chunks():
                watch.progress()
                yield chunk
            if call.reason is not None:
                raise self._stream_error(worker, call, "the transfer was cut")
        except TransportError as exc:
            raise self._stream_error(worker, call, str(exc)) from exc
        finally:
            self._end(call, upstream, watch, None)


def _unreachable(err: RbeeError) -> RbeeError:
    """A broken job stream: the job API decides whether tokens went out already."""
    return err if isinstance(err, DeadlineExceeded) else WorkerUnreachable(err.message)


async def _sse_data(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """The `data:` payloads of an SSE byte stream (workers send one line per field)."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            data = sse.parse_data_line(line.decode().rstrip("\r"))
            if data is not None:
                yield data


def _refusal(worker: WorkerInfo, status: int, body: bytes) -> RbeeError:
    """A worker's error answer, rebuilt; its 503 `worker_unavailable` (not ready: loading,
    stopping) becomes WorkerNotReady, which the caller fails over."""
    err = from_envelope(status, _json(body))
    if status == 503 and err.code == WorkerNotReady.code:
        return WorkerNotReady(f"worker {worker.id}: {err.message}")
    return err


def _earliest(ours: float, theirs: float | None) -> float:
    return ours if theirs is None else min(ours, theirs)


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
