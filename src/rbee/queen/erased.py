"""People erased while this queen runs, so what their requests still in flight write after
the erasure is written without them.

An erasure (queen.gdpr) refuses the person's keys at once, cancels their jobs and waits a
bounded time for their requests in flight: each ends by writing an audit entry, a usage row
and perhaps a stored Response in their name. A request that outlives the wait (a long
generation) must not put back what the erasure removed, so those writers ask here: its audit
entry is written without the person's fields (the tenant and role stay), its usage is folded
under the tenant's `erased` key like the rest of theirs, and its Response is not stored.
After a restart nothing of theirs can be in flight, so memory is enough.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from rbee.queen.actor import Actor


class Erased:
    def __init__(self) -> None:
        self._lock = threading.Lock()  # the audit log records from any thread
        self._users: set[str] = set()
        self._keys: set[str] = set()

    def add(self, user_id: str, key_ids: Iterable[str]) -> None:
        with self._lock:
            self._users.add(user_id)
            self._keys.update(key_ids)

    def user(self, user_id: str | None) -> bool:
        return user_id is not None and user_id in self._users

    def key(self, key_id: str) -> bool:
        return key_id in self._keys

    def actor(self, actor: Actor) -> Actor:
        """`actor` as an entry may name it: without an erased person's fields."""
        if not self.user(actor.user_id):
            return actor
        return Actor(tenant_id=actor.tenant_id, role=actor.role)
