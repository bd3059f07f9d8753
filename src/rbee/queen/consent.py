"""GDPR consent: recorded decisions, and the check every inference path makes.

The users whose latest decision for `processing` is a grant are held in memory (loaded at
start, changed with each decision), so the check on the hot path is a set lookup; the
database keeps every decision (history). Only principals whose tenant sets
`requires_consent` are checked.
"""

from __future__ import annotations

import threading

from rbee.api.gdpr import PROCESSING, Consent
from rbee.core.errors import ConsentRequired
from rbee.queen.identity import Principal
from rbee.storage.gdpr import GdprStore


class Consents:
    def __init__(self, store: GdprStore) -> None:
        self._store = store
        self._lock = threading.Lock()  # decisions are written on threads
        self._processing = frozenset(store.granted(PROCESSING))

    def require(self, principal: Principal) -> None:
        """ConsentRequired (403) when the key's tenant demands consent and its user has
        not given it for `processing`."""
        if principal.requires_consent and principal.user_id not in self._processing:
            raise ConsentRequired(
                f"tenant {principal.tenant!r} processes a user's requests only with their "
                f"consent for purpose '{PROCESSING}', and this key's user has not given it: "
                "record it with POST /gdpr/consent (rbee gdpr consent USER --purpose "
                "processing --grant)")

    def record(self, consent: Consent) -> None:
        """Keep the decision (blocking); it holds for the next request."""
        with self._lock:
            self._store.add_consent(consent)
            if consent.purpose == PROCESSING:
                if consent.granted:
                    self._processing = self._processing | {consent.subject}
                else:
                    self._processing = self._processing - {consent.subject}

    def forget(self, user_id: str) -> None:
        """An erased user (their rows are deleted with the rest of their data)."""
        with self._lock:
            self._processing = self._processing - {user_id}

    def history(self, user_id: str) -> list[Consent]:
        return self._store.consents(user_id)
