"""Calls in flight to workers: the deadlines that end each one, and aborting them.

A call is first *waiting* (for a whole answer, or for a stream's headers) under an
`asyncio.timeout`, then, for a stream, *streaming* under a `Watch`: a timer that ends the
stream when no data frame arrived for too long. Keep-alive comments are not progress, so
this can't be a socket read timeout. The liveness monitor aborts every call of a worker that
stopped answering; a waiting call then raises at once, a stream is cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rbee.core.errors import InvalidRequest

if TYPE_CHECKING:
    from rbee.tracing.tracer import ClientSpan

# Why a call ended early; the relay turns each into the error its client sees.
STALLED = "stalled"  # a stream's worker sent no data frame within the deadline
UNRESPONSIVE = "unresponsive"  # the worker (or its hive) stopped answering probes
DEADLINE = "deadline"  # the client's own deadline passed


class Watch:
    """Ends a stream (`on_expire(reason)`) whose worker stops making progress.

    One timer per stream, re-armed only when it fires: a data frame costs one clock read.
    Before the first data frame the limit is `first`, afterwards `idle`; `until` (the
    client's deadline, loop time) caps both. A chat stream's first frame (the role) comes at
    once, so the prompt's evaluation falls under `idle`: that is why its default is long,
    and why a hung worker is left to liveness (seconds) rather than to these backstops.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, on_expire: Callable[[str], None], *,
                 first: float, idle: float, until: float | None) -> None:
        self._loop = loop
        self._on_expire = on_expire
        self._idle = idle
        self._until = until
        self._last = loop.time()
        self._limit = first
        self._handle = loop.call_at(self._next(), self._check)
        self.frames = 0  # data frames seen: a chat stream's are its tokens
        self._first = 0.0

    def progress(self) -> None:
        self._last = self._loop.time()
        self._limit = self._idle
        if not self.frames:
            self._first = self._last
        self.frames += 1

    def rate(self) -> float | None:
        """Data frames per second from the first to the last (None: too few to tell)."""
        span = self._last - self._first
        return (self.frames - 1) / span if self.frames >= 3 and span > 0 else None

    def _next(self) -> float:
        due = self._last + self._limit
        return due if self._until is None else min(due, self._until)

    def _check(self) -> None:
        now = self._loop.time()
        if self._until is not None and now >= self._until:
            self._on_expire(DEADLINE)
        elif now >= self._last + self._limit:
            self._on_expire(STALLED)
        else:
            self._handle = self._loop.call_at(self._next(), self._check)

    def cancel(self) -> None:
        self._handle.cancel()


class Call:
    """One request to one worker. `reason` says why it was ended early (None: it wasn't)."""

    def __init__(self, worker_id: str, url: str) -> None:
        self.worker_id = worker_id
        self.url = url  # liveness probes it from here, even once the registry dropped it
        self.reason: str | None = None
        self._scope: asyncio.Timeout | None = None
        self._cut: Callable[[], None] | None = None
        self.span: ClientSpan | None = None  # its client span, when tracing is on (queen.relay)

    @contextlib.asynccontextmanager
    async def waiting(self, until: float) -> AsyncIterator[None]:
        """Wait at most until `until` (loop time); an abort ends the wait at once."""
        async with asyncio.timeout_at(until) as scope:
            self._scope = scope
            try:
                yield
            finally:
                self._scope = None

    def streaming(self, cut: Callable[[], None]) -> None:
        """From now on an abort cuts the stream with `cut` (closing its connection)."""
        self._cut = cut

    def abort(self, reason: str) -> None:
        if self.reason is not None:
            return
        self.reason = reason
        if self._scope is not None:
            if not self._scope.expired():  # already ending by its own deadline: let it
                self._scope.reschedule(asyncio.get_running_loop().time())
        elif self._cut is not None:
            self._cut()


class Calls:
    """Every call in flight, by worker: what the liveness monitor probes and aborts."""

    def __init__(self) -> None:
        self._by_worker: dict[str, set[Call]] = {}

    def add(self, worker_id: str, url: str) -> Call:
        call = Call(worker_id, url)
        self._by_worker.setdefault(worker_id, set()).add(call)
        return call

    def untrack(self, call: Call) -> None:
        calls = self._by_worker.get(call.worker_id)
        if calls is not None:
            calls.discard(call)
            if not calls:
                del self._by_worker[call.worker_id]

    def busy(self) -> dict[str, str]:
        """Workers with calls in flight, and the URL each is called at."""
        return {worker_id: next(iter(calls)).url for worker_id, calls in self._by_worker.items()}

    def abort_worker(self, worker_id: str, reason: str) -> int:
        """End every call to `worker_id`; how many there were."""
        calls = list(self._by_worker.get(worker_id, ()))
        for call in calls:
            call.abort(reason)
        return len(calls)


@dataclass(frozen=True)
class ClientDeadline:
    """What the client will wait (loop time / seconds): `until` ends the whole request (our
    `X-Request-Timeout`), `read` is the longest it waits for any byte (the OpenAI SDKs send
    their timeout as `X-Stainless-Read-Timeout`, applied per read like httpx does)."""

    until: float | None = None
    read: float | None = None

    def by(self, now: float) -> float | None:
        """When the client gives up if nothing at all arrives from `now` on."""
        read = None if self.read is None else now + self.read
        if self.until is None or read is None:
            return self.until if read is None else read
        return min(self.until, read)


NO_DEADLINE = ClientDeadline()
# The Stainless SDKs' timeouts bound a wait for bytes (the Python SDK's is httpx's per-read
# timeout; the Node SDK's covers the wait for headers), never a whole stream: both are `read`.
TIMEOUT_HEADERS = {"x-request-timeout": "until", "x-stainless-read-timeout": "read",
                   "x-stainless-timeout": "read"}


def client_deadline(headers: Mapping[str, str], now: float, cap: float) -> ClientDeadline:
    """The client's deadline from its headers; `cap` bounds what a client may ask for."""
    found: dict[str, float] = {}
    for name, field in TIMEOUT_HEADERS.items():
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            seconds = float(raw)
        except ValueError:
            seconds = math.nan
        if not 0 < seconds < math.inf:
            raise InvalidRequest(f"header {name} must be a positive number of seconds",
                                 param=name)
        found[field] = min(found.get(field, math.inf), seconds, cap)
    if not found:
        return NO_DEADLINE
    until = found.get("until")
    return ClientDeadline(until=None if until is None else now + until, read=found.get("read"))
