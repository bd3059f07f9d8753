"""Server-side dashboard sessions: an opaque cookie value → which key logged in.

The browser holds only a random session id (HttpOnly cookie); the queen keeps the key's
*id* (never the key), a CSRF token and an expiry. Every request re-resolves the key by id
through the KeyRing, so a revoked or expired key ends its sessions on their next request.
Sessions live in memory: a restarted queen asks everyone to log in again, which is the
safe default for a credential.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass

from rbee.core.clock import Clock

COOKIE = "rbee_session"
CSRF_HEADER = "x-csrf-token"
SESSION_TTL = 8 * 3600.0  # a working day; the key's own expiry ends it sooner
MAX_SESSIONS = 10_000  # the oldest go first: a login flood cannot grow memory without end
# A key's own sessions (its oldest go first): one key logging in again and again cannot push
# everyone else's sessions out.
MAX_PER_KEY = 16


@dataclass(frozen=True)
class Session:
    key_id: str  # the key's public id ("bootstrap" for the queen's own token)
    csrf_token: str
    expires_at: float  # clock.time()


def _digest(session_id: str) -> str:
    # Looked up by digest: a dict lookup's timing then says nothing about live session ids.
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    def __init__(self, clock: Clock, ttl: float = SESSION_TTL,
                 max_sessions: int = MAX_SESSIONS) -> None:
        self._clock = clock
        self._ttl = ttl
        self._max = max_sessions
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def create(self, key_id: str, key_expires_at: float | None = None) -> tuple[str, Session]:
        """A new session for `key_id`: (the cookie value, the session)."""
        expires = self._clock.time() + self._ttl
        if key_expires_at is not None:
            expires = min(expires, key_expires_at)
        session_id = secrets.token_urlsafe(32)
        session = Session(key_id, secrets.token_urlsafe(32), expires)
        mine = [k for k, s in self._sessions.items() if s.key_id == key_id]
        for key in mine[:max(0, len(mine) - MAX_PER_KEY + 1)]:
            del self._sessions[key]
        self._sessions[_digest(session_id)] = session
        while len(self._sessions) > self._max:
            self._sessions.popitem(last=False)
        return session_id, session

    def get(self, session_id: str) -> Session | None:
        """The live session of a cookie value; an expired one is dropped."""
        if not session_id or len(session_id) > 256:
            return None
        key = _digest(session_id)
        session = self._sessions.get(key)
        if session is not None and self._clock.time() >= session.expires_at:
            del self._sessions[key]
            return None
        return session

    def end(self, session_id: str) -> None:
        self._sessions.pop(_digest(session_id), None)

    def end_key(self, key_id: str) -> None:
        """Drop every session of a key (its revocation; also done lazily on next use)."""
        for key in [k for k, s in self._sessions.items() if s.key_id == key_id]:
            del self._sessions[key]

    def __len__(self) -> int:
        return len(self._sessions)


def csrf_ok(session: Session, presented: str | None) -> bool:
    """The request's X-CSRF-Token is the session's (constant time)."""
    return presented is not None and hmac.compare_digest(presented.encode(),
                                                         session.csrf_token.encode())


def cookie_value(cookie_header: str | None) -> str | None:
    """The `rbee_session` value of a Cookie header (None: absent, or there twice: a page on
    another port or a sibling domain may plant a second one to be taken for the user's, so
    neither is)."""
    if not cookie_header:
        return None
    found = [value.strip() for name, eq, value in
             (part.strip().partition("=") for part in cookie_header.split(";"))
             if eq and name == COOKIE]
    return found[0] if len(found) == 1 else None
