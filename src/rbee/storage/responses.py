"""Stored Responses (`store: true`): the Response object and the conversation it answered."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rbee.storage.db import Database


@dataclass(frozen=True)
class StoredResponse:
    response: dict[str, Any]  # the Response object, as returned
    conversation: list[dict[str, Any]]  # input items: inherited ones first, then its own
    tenant_id: str | None = None  # whose it is (None: the queen's own admin's)


class ResponseStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def save(self, response_id: str, created_at: float, response: dict[str, Any],
             conversation: list[dict[str, Any]], tenant_id: str | None = None,
             user_id: str | None = None) -> None:
        """Whole conversations, not a chain of links: a turn reads one row, and deleting a
        response never breaks the ones that continued it."""
        self._db.execute(
            "INSERT OR REPLACE INTO responses(id, created_at, response, conversation, "
            "tenant_id, user_id) VALUES (?,?,?,?,?,?)",
            (response_id, created_at, json.dumps(response), json.dumps(conversation),
             tenant_id, user_id))

    def get(self, response_id: str) -> StoredResponse | None:
        row = self._db.query_one("SELECT response, conversation, tenant_id FROM responses "
                                 "WHERE id=?", (response_id,))
        if row is None:
            return None
        return StoredResponse(response=json.loads(row[0]), conversation=json.loads(row[1]),
                              tenant_id=row[2])

    def purge(self, before: float) -> int:
        """Delete the responses made before `before`; how many."""
        return self._db.execute("DELETE FROM responses WHERE created_at < ?", (before,))

    def delete(self, response_id: str) -> bool:
        return self._db.execute("DELETE FROM responses WHERE id=?", (response_id,)) > 0
