"""Tenants, users and API keys in the queen's database (migration 5).

Keys are stored as the SHA-256 of the whole key (`digest`): the secret never reaches the disk.
"""

from __future__ import annotations

import json
from typing import Any

from rbee.api.identity import KeyInfo, Tenant, User
from rbee.core.errors import Conflict, NotFound
from rbee.storage.db import Database

_TENANT_COLUMNS = ("SELECT id, name, labels, regions, created_at, requires_consent "
                   "FROM tenants")
_KEY_COLUMNS = ("SELECT k.id, k.user_id, u.tenant_id, k.name, k.role, k.models, "
                "k.max_priority, k.created_at, k.expires_at, k.revoked_at, k.digest "
                "FROM api_keys k JOIN users u ON u.id = k.user_id")


class IdentityStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- tenants
    def add_tenant(self, tenant: Tenant) -> None:
        if self.tenant(tenant.name) is not None:
            raise Conflict(f"a tenant named {tenant.name!r} exists", param="name")
        self._db.execute("INSERT INTO tenants(id, name, labels, regions, created_at, "
                         "requires_consent) VALUES (?,?,?,?,?,?)",
                         (tenant.id, tenant.name, json.dumps(tenant.labels),
                          None if tenant.regions is None else json.dumps(tenant.regions),
                          tenant.created_at, int(tenant.requires_consent)))

    def set_requires_consent(self, tenant_id: str, required: bool) -> None:
        self._db.execute("UPDATE tenants SET requires_consent=? WHERE id=?",
                         (int(required), tenant_id))

    def tenant(self, id_or_name: str) -> Tenant | None:
        row = self._db.query_one(f"{_TENANT_COLUMNS} WHERE id=? OR name=?",
                                 (id_or_name, id_or_name))
        return _tenant(row) if row else None

    def tenants(self) -> list[Tenant]:
        rows = self._db.query(f"{_TENANT_COLUMNS} ORDER BY name")
        return [_tenant(r) for r in rows]

    # -- users
    def add_user(self, user: User) -> None:
        if self._db.query_one("SELECT 1 FROM users WHERE tenant_id=? AND name=?",
                              (user.tenant_id, user.name)):
            raise Conflict(f"the tenant has a user named {user.name!r}", param="name")
        self._db.execute("INSERT INTO users(id, tenant_id, name, email, created_at) "
                         "VALUES (?,?,?,?,?)",
                         (user.id, user.tenant_id, user.name, user.email, user.created_at))

    def user(self, user_id: str) -> User | None:
        row = self._db.query_one("SELECT id, tenant_id, name, email, created_at FROM users "
                                 "WHERE id=?", (user_id,))
        return User(id=row[0], tenant_id=row[1], name=row[2], email=row[3],
                    created_at=row[4]) if row else None

    def users(self, tenant_id: str | None = None) -> list[User]:
        query = "SELECT id, tenant_id, name, email, created_at FROM users"
        args: tuple[str, ...] = ()
        if tenant_id is not None:
            query, args = f"{query} WHERE tenant_id=?", (tenant_id,)
        rows = self._db.query(f"{query} ORDER BY tenant_id, name", args)
        return [User(id=r[0], tenant_id=r[1], name=r[2], email=r[3], created_at=r[4])
                for r in rows]

    # -- keys
    def add_key(self, key: KeyInfo, digest: str) -> None:
        self._db.execute(
            "INSERT INTO api_keys(id, user_id, name, digest, role, models, max_priority, "
            "created_at, expires_at, revoked_at) VALUES (?,?,?,?,?,?,?,?,?,NULL)",
            (key.id, key.user_id, key.name, digest, key.role,
             None if key.models is None else json.dumps(key.models), key.max_priority,
             key.created_at, key.expires_at))

    def all_keys(self, tenant_id: str | None = None) -> list[tuple[KeyInfo, str]]:
        """Every key (with its digest), of one tenant or all."""
        query = _KEY_COLUMNS
        args: tuple[str, ...] = ()
        if tenant_id is not None:
            query, args = f"{query} WHERE u.tenant_id=?", (tenant_id,)
        return [(_key(r), str(r[10])) for r in self._db.query(f"{query} ORDER BY k.created_at",
                                                               args)]

    def revoke(self, key_id: str, now: float) -> KeyInfo:
        changed = self._db.execute("UPDATE api_keys SET revoked_at=? WHERE id=? AND "
                                   "revoked_at IS NULL", (now, key_id))
        row = self._db.query_one(f"{_KEY_COLUMNS} WHERE k.id=?", (key_id,))
        if row is None:
            raise NotFound(f"no API key {key_id!r}", param="key_id")
        if not changed:
            raise Conflict(f"API key {key_id!r} is already revoked", param="key_id")
        return _key(row)


def _tenant(row: tuple[Any, ...]) -> Tenant:
    return Tenant(id=row[0], name=row[1], labels=json.loads(row[2]),
                  regions=None if row[3] is None else json.loads(row[3]), created_at=row[4],
                  requires_consent=bool(row[5]))


def _key(row: tuple[Any, ...]) -> KeyInfo:
    return KeyInfo(id=row[0], user_id=row[1], tenant_id=row[2], name=row[3], role=row[4],
                   models=None if row[5] is None else json.loads(row[5]),
                   max_priority=row[6], created_at=row[7], expires_at=row[8],
                   revoked_at=row[9])
