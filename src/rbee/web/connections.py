"""Deadlines and a cap for client connections: slow or idle clients cannot pin the process.

uvicorn closes a kept-alive connection that idles between requests (`timeout_keep_alive`) and
answers 503 over `limit_concurrency`, but it waits forever for a connection that never finishes
its request headers (or never sends a byte at all) and for a body that stops short of its
Content-Length. Each such client holds a file descriptor; 8,300 of them exhausted the queen's
and took `/health` down (issue 9). `guarded_protocol` adds what is missing to uvicorn's
httptools protocol, in one small subclass:

- **header deadline**: from connect, or from the first byte of a later request on a kept-alive
  connection, until that request's headers are complete. It is a total: trickling bytes does
  not extend it. A partial request gets 408; a connection that sent nothing is just closed (a
  pooled client must not read a stray 408 as the answer to its next request).
- **body deadline**: inside a request body, each read must arrive within `body_timeout` of the
  last (not counted while uvicorn itself has paused reading). 408 unless a response has
  started; then the connection is closed, so the app sees an ordinary client disconnect.
- **ceiling**: past twice the cap, a new connection is closed at once. Up to the cap requests
  are served; between the cap and the ceiling they get uvicorn's 503; past the ceiling they
  cost one accept and nothing else, so descriptors stay bounded (see `connection_cap`).

No deadline runs while a response is being sent: a token stream may last for minutes.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import resource
from dataclasses import dataclass
from typing import Any, Protocol

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

logger = logging.getLogger(__name__)

# Descriptors kept back from client connections: listening sockets, the database, log files,
# connections to hives, child pipes.
RESERVED_FDS = 256
# Used when the hard limit is "unlimited" (macOS): setrlimit refuses RLIM_INFINITY there.
UNLIMITED_TARGET = 65536

_TIMEOUT_408 = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: 15\r\nconnection: close\r\n\r\nRequest Timeout")


class ConnectionSettings(Protocol):
    """The fields queen, hive and worker settings share for their listener."""

    @property
    def header_timeout(self) -> float: ...
    @property
    def body_timeout(self) -> float: ...
    @property
    def keep_alive_timeout(self) -> float: ...
    @property
    def max_connections(self) -> int: ...
    @property
    def send_timeout(self) -> float: ...


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: float = 5.0
    max_connections: int = 4096
    send_timeout: float = 60.0

    @classmethod
    def of(cls, settings: ConnectionSettings) -> ConnectionLimits:
        return cls(settings.header_timeout, settings.body_timeout, settings.keep_alive_timeout,
                   settings.max_connections, settings.send_timeout)


def raise_open_file_limit() -> int:
    """Raise this process's soft open-file limit to its hard limit; returns the limit in force.

    The soft limit is often 1,024, far below what a server with thousands of clients needs,
    while the hard limit (what an unprivileged process may raise it to) is much higher.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_TARGET if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft >= target:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        logger.warning("could not raise the open-file limit from %s to %s: %s", soft, target, exc)
        return soft
    return target


def connection_cap(requested: int, open_files: int) -> int:
    """The connection cap that fits `open_files`: `requested`, or less with a warning.

    Each served connection may hold a second descriptor (the queen's connection to a worker)
    and each one between the cap and the ceiling (twice the cap) holds one until it has its
    503: three descriptors per unit of cap, after the reserve.
    """
    fitting = max(1, (open_files - RESERVED_FDS) // 3)
    if requested > fitting:
        logger.warning("max connections lowered from %s to %s to fit the open-file limit %s",
                       requested, fitting, open_files)
        return fitting
    return requested


class _Phase(enum.Enum):
    IDLE = "idle"  # between requests (uvicorn's keep-alive timer), or before the first byte
    HEADERS = "headers"
    BODY = "body"


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body deadlines and a connection ceiling."""

    limits = ConnectionLimits()  # replaced per server by `guarded_protocol`

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._deadline: asyncio.TimerHandle | None = None
        self._phase = _Phase.IDLE
        self._last_read = 0.0
        self._unsent: asyncio.TimerHandle | None = None  # while the client reads nothing

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > 2 * self.limits.max_connections:
            transport.close()
            return
        # The first request's headers are due from now: this also drops a client that
        # connects and never sends a byte, which uvicorn's keep-alive timer does not cover.
        self._arm(self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._unsent is not None:
            self._unsent.cancel()
        super().connection_lost(exc)

    # A client that keeps its connection open but stops reading shuts its window: the
    # transport's buffer fills, asyncio pauses writing, and the response's send waits for
    # good — holding its worker stream and admission slot. Past `send_timeout` with writing
    # paused, the connection is dropped (the app sees a disconnect and ends the response).

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._unsent is None:
            self._unsent = self.loop.call_later(self.limits.send_timeout, self._send_expired)

    def resume_writing(self) -> None:
        if self._unsent is not None:
            self._unsent.cancel()
            self._unsent = None
        super().resume_writing()

    def _send_expired(self) -> None:
        self._unsent = None
        logger.info("dropping a client that read nothing for %gs", self.limits.send_timeout)
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        self._last_read = self.loop.time()
        super().data_received(data)
        # Armed after parsing, and only if a request is still incomplete: a whole request in
        # one read (the usual case) costs no timer at all.
        if self._deadline is None and self._phase is not _Phase.IDLE \
                and not self.transport.is_closing():
            self._arm(self.limits.header_timeout if self._phase is _Phase.HEADERS
                      else self.limits.body_timeout)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase = _Phase.HEADERS

    def on_headers_complete(self) -> None:
        self._disarm()
        self._phase = _Phase.BODY
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._phase = _Phase.IDLE
        super().on_message_complete()

    def _arm(self, delay: float) -> None:
        self._deadline = self.loop.call_later(delay, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._phase is _Phase.BODY:
            self._body_expired()
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The next request's headers while a response still goes out (pipelining): a
            # response is never cut (a token stream may last minutes); look again later.
            self._arm(self.limits.header_timeout)
            return
        if self._phase is _Phase.HEADERS:
            self.transport.write(_TIMEOUT_408)
        self.transport.close()

    def _body_expired(self) -> None:
        cycle = self.cycle
        streaming = cycle.response_started and not cycle.response_complete
        left = self.limits.body_timeout - (self.loop.time() - self._last_read)
        if left > 0 or self.flow.read_paused or streaming:
            # A read came since the timer was set, or uvicorn paused reading (the app is
            # behind: the stall is ours), or a response goes out: not late (yet).
            self._arm(left if left > 0 else self.limits.body_timeout)
            return
        if not cycle.response_started:
            self.transport.write(_TIMEOUT_408)
        self.transport.close()


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedProtocol]:
    """A protocol class for `uvicorn.Config(http=...)` bound to these limits.

    uvicorn builds one protocol per connection from the class and its own arguments, so the
    limits of this server travel as a class attribute of a subclass made for it.
    """
    return type("GuardedHttpToolsProtocol", (GuardedProtocol,), {"limits": limits})
