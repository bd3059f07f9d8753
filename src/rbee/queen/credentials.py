"""Per-hive secrets: one for the hive's API (and its telemetry), one for its workers.

Each hive has its own pair, so a compromised machine cannot call any other machine's hive
or workers. The local hive's pair is random per queen run; remote hives' pairs are created
at install and kept in the queen's database.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass


@dataclass(frozen=True)
class HiveCredentials:
    token: str
    worker_token: str

    @classmethod
    def new(cls) -> HiveCredentials:
        return cls(secrets.token_urlsafe(32), secrets.token_urlsafe(32))


class Credentials:
    def __init__(self) -> None:
        self._by_hive: dict[str, HiveCredentials] = {}

    def set(self, hive_id: str, creds: HiveCredentials) -> None:
        self._by_hive[hive_id] = creds

    def get(self, hive_id: str) -> HiveCredentials | None:
        return self._by_hive.get(hive_id)

    def drop(self, hive_id: str) -> None:
        self._by_hive.pop(hive_id, None)

    def hive_auth(self, hive_id: str) -> str | None:
        creds = self._by_hive.get(hive_id)
        return f"Bearer {creds.token}" if creds else None

    def worker_auth(self, hive_id: str) -> str | None:
        creds = self._by_hive.get(hive_id)
        return f"Bearer {creds.worker_token}" if creds else None
