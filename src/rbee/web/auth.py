"""Bearer-token checks. Tokens are compared in constant time and never logged."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

from rbee.core.errors import Unauthorized


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
