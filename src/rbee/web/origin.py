"""Refuse what a web page could send: DNS-rebound `Host`s and cross-origin requests.

A browser attaches no bearer token by itself, but it will send a page's requests to a
loopback queen: cross-origin ones carry that page's `Origin`, and a DNS-rebound page's
requests carry the attacker's name in `Host`. `BrowserGuard` refuses both (403 envelope)
before anything else runs, and lets origins the operator allowed use the API (CORS).
Clients that are not browsers (curl, the SDKs, the rbee CLI) send no `Origin` and a
loopback or configured `Host`, and pass untouched.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Collection
from urllib.parse import urlsplit

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = ("0.0.0.0", "::", "")
CORS_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")  # every method the queen routes
CORS_EXPOSED = ("Retry-After",)


def trusted_hosts(bind: str, api_token: str | None, public_url: str | None,
                  allowed_hosts: Collection[str]) -> frozenset[str] | None:
    """The `Host` names a queen answers (IP literals aside, see `BrowserGuard`); None: any.

    With a token and no explicit list, any name: a rebound page cannot present the token,
    and a queen reached by a name (a reverse proxy, a LAN name) needs no extra setting.
    """
    if "*" in allowed_hosts or (api_token is not None and not allowed_hosts):
        return None
    names = {*LOOPBACK_NAMES, *(h.strip().lower() for h in allowed_hosts)}
    if bind not in WILDCARD_BINDS:
        names.add(bind.lower())
    if public_url:
        names.add((urlsplit(public_url).hostname or "").lower())
    names.discard("")
    return frozenset(names)


def _envelope(code: str, message: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "permission_error",
                                 "param": None, "code": code}}).encode()


def _host_name(host: bytes) -> bytes:
    """`name:port`, `[v6]:port` or a bare name → the name, lowercase, without brackets."""
    host = host.lower()
    if host.startswith(b"["):
        end = host.find(b"]")
        return host[1:end] if end > 0 else host
    name, colon, port = host.rpartition(b":")
    if colon and port.isdigit() and b":" not in name:
        return name
    return host


def _is_ip(name: bytes) -> bool:
    try:
        ipaddress.ip_address(name.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return False
    return True


class BrowserGuard:
    """ASGI middleware, outermost: the `Host` and `Origin` checks, then CORS.

    `Host`: one of `allowed_hosts` (None: any) or an IP literal. Rebinding needs a name the
    attacker controls; a page whose origin is an IP address is served from that address.
    `Origin`: absent (not a browser), same-origin, or in `allowed_origins` (`*`: any); the
    allowed ones go through Starlette's CORSMiddleware (preflights answered here, before the
    token check, as browsers send no credentials with them). Everything else: 403.
    One pass over the raw header list; no objects are built for a request that passes.
    """

    def __init__(self, app: ASGIApp, *, allowed_hosts: Collection[str] | None,
                 allowed_origins: Collection[str]) -> None:
        self.app = app
        self._hosts = (None if allowed_hosts is None
                       else frozenset(h.encode("idna") for h in allowed_hosts))
        origins = [o.strip().lower().rstrip("/") for o in allowed_origins]
        self._any_origin = "*" in origins
        self._origins = frozenset(o.encode() for o in origins)
        self._cors = CORSMiddleware(app, allow_origins=origins, allow_methods=CORS_METHODS,
                                    allow_headers=["*"], expose_headers=CORS_EXPOSED,
                                    allow_private_network=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host: bytes | None = None
        origin: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"host":
                if not self._host_allowed(value):
                    await self._refuse(send, "host_not_allowed",
                                       "Host header names no address of this server; add it "
                                       "to RBEE_QUEEN_ALLOWED_HOSTS to serve it")
                    return
                host = value.lower()
            elif name == b"origin" and origin is None:
                origin = value.lower()
        if origin is None or (host is not None and origin in (b"http://" + host,
                                                              b"https://" + host)):
            await self.app(scope, receive, send)
        elif self._any_origin or origin in self._origins:
            await self._cors(scope, receive, send)
        else:
            await self._refuse(send, "origin_not_allowed",
                               "cross-origin request refused; allow the page's origin with "
                               "RBEE_QUEEN_ALLOWED_ORIGINS")

    def _host_allowed(self, value: bytes) -> bool:
        if self._hosts is None:
            return True
        name = _host_name(value)
        return name in self._hosts or _is_ip(name)

    @staticmethod
    async def _refuse(send: Send, code: str, message: str) -> None:
        body = _envelope(code, message)
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
