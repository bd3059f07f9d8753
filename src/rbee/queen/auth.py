"""The queen's key check: in front of every route but the open ones, before a body is read.

It resolves the request's `Principal` (queen.identity), refuses a path the key's role may
not use (403), and leaves the principal in the ASGI scope for the routes: they check what
only they can see (the model, the priority, the job operation, whose job it is).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from rbee.core.errors import RbeeError, Unauthorized
from rbee.queen.identity import LOCAL, MISSING_KEY, KeyRing, Principal, path_role
from rbee.web.errors import error_response

SCOPE_KEY = "rbee.principal"


class KeyAuth:
    """`enabled`: the queen has a bootstrap token, so every request needs a key; without one
    every request is the local admin (a loopback-only queen: see queen.identity)."""

    def __init__(self, app: ASGIApp, open_paths: frozenset[str], enabled: bool,
                 on_refused: Callable[[Scope, str], None] | None = None) -> None:
        self.app = app
        self._open = open_paths
        self._enabled = enabled
        self._on_refused = on_refused  # hears of each refused key (the audit log), never it

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in self._open:
            try:
                principal = self._principal(scope)
                principal.require(path_role(scope["path"]), scope["path"])
            except RbeeError as exc:
                if self._on_refused is not None and isinstance(exc, Unauthorized):
                    self._on_refused(scope, exc.message)
                await error_response(exc)(scope, receive, send)
                return
            scope[SCOPE_KEY] = principal
        await self.app(scope, receive, send)

    def _principal(self, scope: Scope) -> Principal:
        if not self._enabled:
            return LOCAL
        header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        if not header:  # refused before the services are looked up (or even started)
            raise Unauthorized(MISSING_KEY)
        keys: KeyRing = scope["app"].state.services.keys
        return keys.authenticate(header.decode("latin-1"))


def principal_of(request: Request) -> Principal:
    """The caller KeyAuth let in; a route reached without it is refused (fail closed)."""
    principal = request.scope.get(SCOPE_KEY)
    if not isinstance(principal, Principal):
        raise Unauthorized("no API key was checked for this route")
    return principal
