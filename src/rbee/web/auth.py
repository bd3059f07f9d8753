"""Bearer-token checks. Tokens are compared in constant time and never logged."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from rbee.core.errors import Unauthorized
from rbee.web.errors import error_response


def fingerprint(token: str) -> str:
    """What logs may show instead of a token."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:12]


def check_bearer(header: str | None, expected: str | None) -> None:
    """Raise Unauthorized unless `header` carries `expected` (no check when None)."""
    if expected is None:
        return
    presented = ""
    if header and header[:7].lower() == "bearer ":
        presented = header[7:].strip()
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise Unauthorized("missing or invalid bearer token")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def refuse_open_listener(host: str, token: str | None, what: str) -> None:
    """No unauthenticated listener on a non-loopback address."""
    if token is None and not is_loopback(host):
        raise SystemExit(
            f"{what}: refusing to listen on {host} without a token; set one or bind 127.0.0.1"
        )


class BearerAuth:
    """ASGI middleware: the one API-token check in front of every route but `open_paths`
    (no check at all when `token` is None). Runs before the body is read. `on_refused`
    hears of each refusal (the audit log), never of the credential presented."""

    def __init__(self, app: ASGIApp, token: str | None, open_paths: frozenset[str],
                 on_refused: Callable[[Scope, str], None] | None = None) -> None:
        self.app = app
        self._token = token
        self._open = open_paths
        self._on_refused = on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._token is not None and scope["type"] == "http" and scope["path"] not in self._open:
            header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
            try:
                check_bearer(header.decode("latin-1") if header else None, self._token)
            except Unauthorized as exc:
                if self._on_refused is not None:
                    self._on_refused(scope, exc.message)
                await error_response(exc)(scope, receive, send)
                return
        await self.app(scope, receive, send)
