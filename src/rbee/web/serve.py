"""Run an ASGI app under uvicorn, optionally on a socket inherited from the parent."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
from collections.abc import Callable, Sequence

import uvicorn
from starlette.types import ASGIApp

from rbee.web.connections import (
    ConnectionLimits,
    ConnectionSettings,
    connection_cap,
    guarded_protocol,
    raise_open_file_limit,
)

logger = logging.getLogger(__name__)


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before spawning: the parent knows the port and no other process can steal it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


async def watch_parent(parent_pid: int, server: uvicorn.Server, interval: float = 0.5) -> None:
    """Exit when the process that started us is gone (portable backstop to PDEATHSIG)."""
    while not server.should_exit:
        if os.getppid() != parent_pid:
            logger.warning("parent %s is gone; shutting down", parent_pid)
            server.should_exit = True
            return
        await asyncio.sleep(interval)


def serve(
    app: ASGIApp, *, host: str, port: int, fd: int | None = None, parent_pid: int | None = None,
    log_level: str = "warning", limits: ConnectionSettings | None = None,
    trusted_proxies: Sequence[str] = (),
) -> None:
    """Serve `app` until told to stop; `limits` (queen, hive or worker settings) bound how long
    a client may take and how many may connect; a request from one of `trusted_proxies`
    (addresses or networks) is its X-Forwarded-For client's."""
    wanted = ConnectionLimits.of(limits) if limits is not None else ConnectionLimits()
    cap = connection_cap(wanted.max_connections, raise_open_file_limit())
    config = server_config(app, host=host, port=port, log_level=log_level,
                           limits=dataclasses.replace(wanted, max_connections=cap),
                           trusted_proxies=trusted_proxies)
    server = uvicorn.Server(config)
    # An inherited fd goes in as a socket object: uvicorn's own `fd=` option treats it as a
    # Unix socket and skips TCP_NODELAY, which costs ~40 ms per response (Nagle + delayed ACK).
    sockets = None
    if fd is not None:
        sock = socket.socket(fileno=fd)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sockets = [sock]

    async def main() -> None:
        watcher = None
        if parent_pid:
            watcher = asyncio.create_task(watch_parent(parent_pid, server))
        try:
            await server.serve(sockets=sockets)
        finally:
            if watcher:
                watcher.cancel()

    # uvicorn picks uvloop only when it creates the loop itself; we create it, so ask here.
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(main())


def server_config(app: ASGIApp, *, host: str, port: int, limits: ConnectionLimits,
                  log_level: str = "warning", trusted_proxies: Sequence[str] = ()
                  ) -> uvicorn.Config:
    return uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=False,
        timeout_graceful_shutdown=1, lifespan="on",
        # Forwarded headers only from proxies the operator named (uvicorn's own middleware;
        # its default would believe any loopback peer), and only then: it is work on every
        # request. Clients need no Server/Date headers: more work on a hot path.
        proxy_headers=bool(trusted_proxies), forwarded_allow_ips=list(trusted_proxies),
        server_header=False, date_header=False,
        # Header and body deadlines and a hard ceiling on connections (web/connections.py);
        # uvicorn itself answers 503 past the cap and closes idle kept-alive connections.
        # No websockets: an upgraded connection would escape the deadlines, and none of
        # ours speaks them.
        http=guarded_protocol(limits), ws="none", limit_concurrency=limits.max_connections,
        # Annotated `int` by uvicorn, but it only goes to call_later: any number works.
        timeout_keep_alive=limits.keep_alive_timeout,  # type: ignore[arg-type]
    )


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional on some platforms
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
