"""The dashboard's routes: the page, its static files, login sessions and live events.

Everything a page *does* goes through the ordinary /v1 and /gdpr routes with the session
cookie (queen.auth); these routes only open and close sessions and push the cluster.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from rbee.core.clock import SystemClock
from rbee.core.errors import NotFound, RbeeError, Unauthorized
from rbee.queen.actor import Actor
from rbee.queen.auth import principal_of
from rbee.queen.dashboard.cluster_view import RunningJob, cluster_view
from rbee.queen.dashboard.login import LoginThrottle
from rbee.queen.dashboard.sessions import COOKIE, SessionStore, cookie_value
from rbee.queen.deps import ServicesDep
from rbee.queen.identity import Principal
from rbee.queen.routes.openai import client_ip
from rbee.queen.services import QueenServices
from rbee.queen.watchdog import IdleTTL
from rbee.web.body import parse_body
from rbee.web.streaming import DisconnectAwareStream

STATIC = Path(__file__).parent / "static"
STATIC_PREFIX = "/ui/static/"
OPEN_PATHS = frozenset({"/", "/ui/login"})  # they reveal nothing (KeyAuth lets them by)
# The only file types served: anything else under static/ is a 404, not a guess.
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
          ".txt": "text/plain; charset=utf-8", ".woff2": "font/woff2",
          ".json": "application/json"}
# The page loads only its own scripts and styles; data goes in with textContent (no XSS
# sink), and no other site may frame it (clickjacking).
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY", "Cache-Control": "no-cache",
}
EVENT_TICK = 1.0  # seconds: a hive that goes silent changes nothing, so we look this often
MIN_GAP = 0.25  # seconds between two pushes: telemetry bursts coalesce

router = APIRouter()


def install(app: FastAPI) -> SessionStore:
    """Add the dashboard to `app`. Its sessions live with the app, not the services:
    KeyAuth needs them before start-up completes, and a restarted queen forgets them."""
    app.include_router(router)
    sessions = app.state.dashboard_sessions = SessionStore(SystemClock())
    app.state.dashboard_logins = LoginThrottle(SystemClock())
    return sessions


class TooManyLogins(RbeeError):
    http_status = 429
    openai_type = "rate_limit_error"
    code = "too_many_logins"


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    api_key: str = Field(min_length=1, max_length=512)


class SessionInfo(BaseModel):
    role: str
    tenant: str | None
    key_prefix: str
    csrf_token: str


def _sessions(request: Request) -> SessionStore:
    found: SessionStore = request.app.state.dashboard_sessions
    return found


def _throttle(request: Request) -> LoginThrottle:
    found: LoginThrottle = request.app.state.dashboard_logins
    return found


def key_prefix(principal: Principal) -> str:
    """What the page may show of the key: its public id, never any of its secret."""
    if principal.key_id in ("bootstrap", "local"):
        return principal.key_id
    return f"rbee-{principal.key_id}"


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type=_TYPES[".html"],
                        headers=_PAGE_HEADERS)


@router.get(STATIC_PREFIX + "{path:path}", include_in_schema=False)
async def static(path: str) -> FileResponse:
    missing = NotFound(f"no dashboard file {path[:64]!r}")
    if len(path) > 200 or "\0" in path:  # names the OS would refuse (an OSError, a 500)
        raise missing
    root = STATIC.resolve()
    target = (root / path).resolve()
    # resolve() folds `..` and symlinks: whatever the path says, it must stay under static/.
    if not target.is_relative_to(root) or target.suffix not in _TYPES or not target.is_file():
        raise missing
    # The page's own headers on every file: /ui/static/index.html is the page too, and
    # must not be framed either.
    return FileResponse(target, media_type=_TYPES[target.suffix], headers=_PAGE_HEADERS)


@router.post("/ui/login", response_model=SessionInfo)
async def login(request: Request, svc: ServicesDep) -> JSONResponse:
    address = client_ip(request) or "?"
    throttle = _throttle(request)
    wait = throttle.retry_after(address)
    if wait is not None:
        exc = TooManyLogins("too many failed logins from this address; try again later")
        exc.retry_after = math.ceil(wait)
        raise exc
    body = await parse_body(request, LoginRequest)
    try:
        principal = svc.keys.authenticate(f"Bearer {body.api_key}")
    except Unauthorized as exc:
        throttle.failed(address)
        svc.audit.auth_failure(f"dashboard login: {exc.message}",
                               actor=Actor(client_ip=address),
                               path=request.url.path)
        raise
    # (a success does not clear the address's failures: 9 bad tries and a good one, again
    # and again, would never be throttled)
    session_id, session = _sessions(request).create(principal.key_id, principal.expires_at)
    svc.audit.record("dashboard.login", actor=principal.actor(address), outcome="ok")
    info = SessionInfo(role=principal.role, tenant=principal.tenant,
                       key_prefix=key_prefix(principal), csrf_token=session.csrf_token)
    response = JSONResponse(info.model_dump())
    response.set_cookie(COOKIE, session_id, max_age=max(1, int(session.expires_at
                                                                - svc.clock.time())),
                        path="/", httponly=True, samesite="strict",
                        secure=_secure(request, svc))
    return response


def _secure(request: Request, svc: QueenServices) -> bool:
    """Over https: the queen's own scheme, or the public URL a TLS proxy serves it at (the
    queen itself sees plain http from the proxy)."""
    public = svc.settings.public_url or ""
    return request.url.scheme == "https" or public.lower().startswith("https://")


@router.post("/ui/logout", status_code=204)
async def logout(request: Request, svc: ServicesDep) -> Response:
    session_id = cookie_value(request.headers.get("cookie"))
    if session_id:
        _sessions(request).end(session_id)
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                           secure=_secure(request, svc))
    return response


@router.get("/ui/session", response_model=SessionInfo)
async def session_info(request: Request) -> SessionInfo:
    """Who is logged in (a reloaded page asks); the CSRF token only a session has."""
    principal = principal_of(request)
    session_id = cookie_value(request.headers.get("cookie"))
    found = _sessions(request).get(session_id) if session_id else None
    return SessionInfo(role=principal.role, tenant=principal.tenant,
                       key_prefix=key_prefix(principal),
                       csrf_token=found.csrf_token if found else "")


@router.get("/ui/events", include_in_schema=False)
async def events(request: Request, svc: ServicesDep) -> DisconnectAwareStream:
    """Server-sent events: `cluster` frames with the whole view, on every change."""
    principal = principal_of(request)
    session_id = cookie_value(request.headers.get("cookie"))
    sessions = _sessions(request)
    ttl = IdleTTL(svc.settings.idle_ttl, svc.settings.model_ttl)

    def still_allowed() -> bool:
        # A session's key revoked or expired, or the session ended: the stream ends too.
        if svc.keys.enabled and session_id and request.headers.get("authorization") is None \
                and sessions.get(session_id) is None:
            return False
        try:
            svc.keys.principal_for(principal.key_id)
        except Unauthorized:
            return False
        return True

    return DisconnectAwareStream(_pushes(svc, principal, ttl, still_allowed))


async def _pushes(svc: QueenServices, principal: Principal, ttl: IdleTTL,
                  still_allowed: Any) -> AsyncIterator[bytes]:
    yield b"retry: 2000\n\n"  # EventSource reconnects after 2 s if the queen restarts
    while still_allowed():
        seen = svc.registry.changes  # a change from here on means another push
        entries = await asyncio.to_thread(svc.fleet.entries)
        running = [RunningJob(*j) for j in svc.jobs.running()]
        view = cluster_view(svc.registry, entries, ttl, running, principal)
        yield _frame("cluster", view)
        await asyncio.sleep(MIN_GAP)
        await svc.registry.wait_change(EVENT_TICK, since=seen)
    yield _frame("session_ended", {"message": "your session has ended; log in again"})


def _frame(event: str, payload: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()
