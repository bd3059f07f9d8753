"""The queen's key check: in front of every route but the open ones, before a body is read.

It resolves the request's `Principal` (queen.identity), refuses a path the key's role may
not use (403), and leaves the principal in the ASGI scope for the routes: they check what
only they can see (the model, the priority, the job operation, whose job it is).

A key arrives as `Authorization: Bearer` or, from the dashboard, as its `rbee_session`
cookie (queen.dashboard.sessions). A browser attaches cookies to cross-site requests too,
so with the cookie every method but GET/HEAD must also carry the session's `X-CSRF-Token`
(a header a foreign page cannot set without a CORS preflight the queen refuses).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from rbee.core.errors import CsrfFailed, RbeeError, Unauthorized
from rbee.queen.dashboard.sessions import CSRF_HEADER, SessionStore, cookie_value, csrf_ok
from rbee.queen.identity import LOCAL, MISSING_KEY, KeyRing, Principal, path_role
from rbee.web.errors import error_response

SCOPE_KEY = "rbee.principal"
_SAFE_METHODS = ("GET", "HEAD")  # read-only: no CSRF token needed with a session cookie


class KeyAuth:
    """`enabled`: the queen has a bootstrap token, so every request needs a key; without one
    every request is the local admin (a loopback-only queen: see queen.identity)."""

    def __init__(self, app: ASGIApp, open_paths: frozenset[str], enabled: bool,
                 on_refused: Callable[[Scope, str], None] | None = None, *,
                 open_prefixes: tuple[str, ...] = (),
                 sessions: SessionStore | None = None) -> None:
        self.app = app
        self._open = open_paths
        self._open_prefixes = open_prefixes  # static files: they reveal nothing
        self._enabled = enabled
        self._on_refused = on_refused  # hears of each refused key (the audit log), never it
        self._sessions = sessions

    def _is_open(self, path: str) -> bool:
        return path in self._open or (bool(self._open_prefixes)
                                      and path.startswith(self._open_prefixes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._is_open(scope["path"]):
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
            return self._session_principal(scope)
        keys: KeyRing = scope["app"].state.services.keys
        return keys.authenticate(header.decode("latin-1"))

    def _session_principal(self, scope: Scope) -> Principal:
        """The key behind a dashboard session cookie (a bearer header wins when both come)."""
        cookies = next((v for k, v in scope["headers"] if k == b"cookie"), None)
        session_id = cookie_value(cookies.decode("latin-1")) if cookies else None
        if session_id is None or self._sessions is None:
            raise Unauthorized(MISSING_KEY)
        session = self._sessions.get(session_id)
        if session is None:
            raise Unauthorized("your dashboard session has ended; log in again")
        if scope["method"] not in _SAFE_METHODS:
            token = next((v for k, v in scope["headers"] if k == CSRF_HEADER.encode()), None)
            if not csrf_ok(session, token.decode("latin-1") if token else None):
                raise CsrfFailed("this request came with the session cookie but without its "
                                 "X-CSRF-Token header")
        keys: KeyRing = scope["app"].state.services.keys
        try:
            return keys.principal_for(session.key_id)
        except Unauthorized:
            self._sessions.end(session_id)  # revoked or expired: the session ends with it
            raise


def principal_of(request: Request) -> Principal:
    """The caller KeyAuth let in; a route reached without it is refused (fail closed)."""
    principal = request.scope.get(SCOPE_KEY)
    if not isinstance(principal, Principal):
        raise Unauthorized("no API key was checked for this route")
    return principal
