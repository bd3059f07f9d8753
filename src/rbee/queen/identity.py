"""Who is asking: API keys to principals, and what each role may do.

A key reads `rbee-<id>-<secret>`: the id is public (listed, logged, audited: the key's
fingerprint), the secret is 256 random bits. The queen keeps every live key's SHA-256 in
memory, so checking one is a dictionary lookup and one constant-time comparison, and a
revocation takes effect for the next request. The queen's own `api_token` is the bootstrap
admin credential: it creates the first tenants and keys.

Without an `api_token` the queen is a single-user loopback service (it refuses any other
address without one): every request is the local admin and no key can be issued, because
nobody would be asked for it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import uuid
from dataclasses import dataclass

from rbee.api.identity import (
    ROLES,
    KeyCreate,
    KeyCreated,
    KeyInfo,
    Priority,
    Role,
    Tenant,
    TenantCreate,
    TenantUpdate,
    User,
    UserCreate,
)
from rbee.core.clock import Clock
from rbee.core.errors import Forbidden, InvalidRequest, NotFound, Unauthorized
from rbee.models.catalog import parse_ref
from rbee.queen.actor import Actor
from rbee.queen.admission import PRIORITIES
from rbee.storage.identity import IdentityStore

KEY_PREFIX = "rbee-"
MISSING_KEY = ("an API key is required: Authorization: Bearer <key> (the rbee CLI reads it "
               "from RBEE_API_TOKEN)")
_DAY = 86_400.0


@dataclass(frozen=True)
class Principal:
    """The caller of one request."""

    role: Role
    key_id: str  # the fingerprint to log and audit: "bootstrap", "local" or a key's id
    tenant_id: str | None = None  # None: the queen's own (bootstrap or local) admin
    tenant: str | None = None  # the tenant's name (scripts see it)
    user_id: str | None = None
    models: frozenset[str] | None = None  # None: every model
    max_priority: Priority = "interactive"
    expires_at: float | None = None
    tenant_labels: tuple[tuple[str, str], ...] = ()  # scheduling scripts see them
    requires_consent: bool = False  # its tenant's users need consent first (queen.consent)

    def actor(self, client_ip: str | None) -> Actor:
        """Who this is, for the audit log: the key's id, never the key."""
        return Actor(tenant_id=self.tenant_id, user_id=self.user_id, key_fingerprint=self.key_id,
                     role=self.role, client_ip=client_ip)

    def can(self, role: Role) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    def require(self, role: Role, what: str) -> None:
        if not self.can(role):
            raise Forbidden(f"{what} needs an {role} key; this key's role is {self.role}")

    def sees_all_tenants(self) -> bool:
        """Operators and admins see every tenant's jobs and responses; users their own."""
        return self.tenant_id is None or self.can("operator")

    def owns(self, tenant_id: str | None) -> bool:
        return self.sees_all_tenants() or tenant_id == self.tenant_id

    def check_model(self, model: str) -> None:
        if self.models is not None and model not in self.models:
            raise Forbidden(f"this API key may not use model {model!r}; it may use "
                            f"{', '.join(sorted(self.models))}", param="model")

    def check_priority(self, priority: str) -> None:
        if PRIORITIES.get(priority, 0) < PRIORITIES[self.max_priority]:
            raise Forbidden(f"this API key may ask for priority {self.max_priority} at most",
                            param="priority")


LOCAL = Principal(role="admin", key_id="local")
BOOTSTRAP = Principal(role="admin", key_id="bootstrap")


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_id_of(key: str) -> str | None:
    """The public id of a presented key, or None when it is not shaped like one."""
    if not key.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = key[len(KEY_PREFIX):].partition("-")
    return key_id if sep and key_id and secret else None


class KeyRing:
    """Issues, checks and revokes keys; the identity store behind it is the truth."""

    def __init__(self, store: IdentityStore, clock: Clock, bootstrap_token: str | None) -> None:
        self._store = store
        self._clock = clock
        self._bootstrap = bootstrap_token
        self._lock = threading.Lock()  # admin calls run on threads; lookups on the loop
        self._live: dict[str, tuple[str, Principal]] = {}
        self._tenants: dict[str, Tenant] = {}
        self._regions: dict[str, frozenset[str]] = {}  # name -> its only regions
        self.reload()

    @property
    def enabled(self) -> bool:
        """Whether requests must present a key (the queen has a bootstrap token)."""
        return self._bootstrap is not None

    def reload(self) -> None:
        tenants = {t.id: t for t in self._store.tenants()}
        regions = {t.name: frozenset(t.regions) for t in tenants.values()
                   if t.regions is not None}
        live = {info.id: (stored, self._principal(info, tenants))
                for info, stored in self._store.all_keys() if info.revoked_at is None}
        with self._lock:
            self._tenants, self._live, self._regions = tenants, live, regions

    def regions_of(self, tenant: str) -> frozenset[str] | None:
        """The only regions a tenant (by name) may run in; None: anywhere."""
        return self._regions.get(tenant)

    def authenticate(self, header: str | None) -> Principal:
        """The principal of an `Authorization: Bearer ...` header; Unauthorized otherwise."""
        if not self.enabled:
            return LOCAL
        presented = ""
        if header and header[:7].lower() == "bearer ":
            presented = header[7:].strip()
        if not presented:
            raise Unauthorized(MISSING_KEY)
        assert self._bootstrap is not None
        if hmac.compare_digest(presented.encode(), self._bootstrap.encode()):
            return BOOTSTRAP
        key_id = key_id_of(presented)
        found = self._live.get(key_id) if key_id else None
        # Compared even for an unknown id, so the time taken says nothing about which ids exist.
        expected = found[0] if found else "0" * 64
        if not hmac.compare_digest(digest(presented).encode(), expected.encode()) or not found:
            raise Unauthorized("invalid API key")
        principal = found[1]
        if principal.expires_at is not None and self._clock.time() >= principal.expires_at:
            raise Unauthorized("this API key has expired")
        return principal

    def principal_for(self, key_id: str) -> Principal:
        """The principal of a key known by id (a dashboard session): Unauthorized once the
        key is revoked or expired, so a session ends on its key's next use."""
        if not self.enabled:
            return LOCAL
        if key_id == BOOTSTRAP.key_id:
            return BOOTSTRAP
        found = self._live.get(key_id)
        if found is None:
            raise Unauthorized("this session's API key was revoked; log in again")
        principal = found[1]
        if principal.expires_at is not None and self._clock.time() >= principal.expires_at:
            raise Unauthorized("this session's API key has expired; log in again")
        return principal

    # -- admin operations (blocking: routes run them on a thread)
    def create_tenant(self, body: TenantCreate) -> Tenant:
        self._require_enabled()
        tenant = Tenant(id=f"ten_{uuid.uuid4().hex[:16]}", name=body.name, labels=body.labels,
                        regions=body.regions, created_at=self._clock.time(),
                        requires_consent=body.requires_consent)
        self._store.add_tenant(tenant)
        self.reload()
        return tenant

    def create_user(self, body: UserCreate) -> User:
        self._require_enabled()
        tenant = self._store.tenant(body.tenant)
        if tenant is None:
            raise NotFound(f"no tenant {body.tenant!r}", param="tenant")
        user = User(id=f"usr_{uuid.uuid4().hex[:16]}", tenant_id=tenant.id, name=body.name,
                    email=body.email, created_at=self._clock.time())
        self._store.add_user(user)
        return user

    def create_key(self, body: KeyCreate) -> KeyCreated:
        self._require_enabled()
        user = self._store.user(body.user)
        if user is None:
            raise NotFound(f"no user {body.user!r}", param="user")
        models = None
        if body.models is not None:  # as /v1/models names them: an alias is its model
            models = sorted({parse_ref(m).name for m in body.models})
        key_id = secrets.token_hex(6)
        key = f"{KEY_PREFIX}{key_id}-{secrets.token_urlsafe(32)}"
        now = self._clock.time()
        info = KeyInfo(id=key_id, user_id=user.id, tenant_id=user.tenant_id, name=body.name,
                       role=body.role, models=models, max_priority=body.max_priority,
                       created_at=now, revoked_at=None,
                       expires_at=None if body.expires_in_days is None
                       else now + body.expires_in_days * _DAY)
        self._store.add_key(info, digest(key))
        self.reload()
        return KeyCreated(**info.model_dump(), key=key)

    def update_tenant(self, tenant: str, body: TenantUpdate) -> Tenant:
        """Change a tenant's GDPR consent rule; its keys meet it on their next request."""
        found = self.tenant(tenant)
        self._store.set_requires_consent(found.id, body.requires_consent)
        self.reload()
        return found.model_copy(update={"requires_consent": body.requires_consent})

    def forget_user(self, user_id: str) -> None:
        """Drop a user's keys from memory at once (a GDPR erasure deletes their rows)."""
        with self._lock:
            self._live = {k: v for k, v in self._live.items() if v[1].user_id != user_id}

    def revoke(self, key_id: str) -> KeyInfo:
        info = self._store.revoke(key_id, self._clock.time())
        with self._lock:  # gone for the next request, before the answer goes out
            self._live = {k: v for k, v in self._live.items() if k != key_id}
        return info

    def tenants(self) -> list[Tenant]:
        return self._store.tenants()

    def users(self, tenant: str | None) -> list[User]:
        return self._store.users(self._tenant_id(tenant))

    def keys(self, tenant: str | None) -> list[KeyInfo]:
        return [info for info, _ in self._store.all_keys(self._tenant_id(tenant))]

    def tenant(self, tenant: str) -> Tenant:
        """A tenant by id or name; NotFound naming `tenant` otherwise."""
        found = self._store.tenant(tenant)
        if found is None:
            raise NotFound(f"no tenant {tenant!r}", param="tenant")
        return found

    def key(self, key_id: str) -> KeyInfo:
        found = next((info for info, _ in self._store.all_keys() if info.id == key_id), None)
        if found is None:
            raise NotFound(f"no API key {key_id!r}", param="key_id")
        return found

    def _tenant_id(self, tenant: str | None) -> str | None:
        """The id of a tenant given by id or name (None: every tenant)."""
        if tenant is None:
            return None
        found = self._store.tenant(tenant)
        if found is None:
            raise NotFound(f"no tenant {tenant!r}", param="tenant")
        return found.id

    def _require_enabled(self) -> None:
        if not self.enabled:
            raise InvalidRequest("this queen has no bootstrap admin token, so nobody would be "
                                 "asked for a key: set RBEE_QUEEN_API_TOKEN first")

    def _principal(self, info: KeyInfo, tenants: dict[str, Tenant]) -> Principal:
        tenant = tenants.get(info.tenant_id)
        return Principal(role=info.role, key_id=info.id, tenant_id=info.tenant_id,
                         tenant=tenant.name if tenant else None, user_id=info.user_id,
                         tenant_labels=tuple(sorted(tenant.labels.items())) if tenant else (),
                         models=None if info.models is None else frozenset(info.models),
                         max_priority=info.max_priority, expires_at=info.expires_at,
                         requires_consent=bool(tenant and tenant.requires_consent))


# Paths and what they need beyond a valid key. Job operations are checked one by one
# (OPERATION_ROLES); every other /v1 path is a user's.
_PATH_ROLES: tuple[tuple[str, Role], ...] = (
    ("/v1/admin", "admin"), ("/v1/workers", "operator"), ("/v1/scheduler", "operator"),
    ("/v1/hives", "operator"), ("/metrics", "operator"))
OPERATION_ROLES: dict[str, Role] = {
    "infer": "user", "embed": "user", "image": "user", "video": "user", "speak": "user",
    "transcribe": "user", "status": "user",
    "model_list": "user", "model_get": "user",
    "worker_spawn": "operator", "worker_list": "operator", "worker_stop": "operator",
    "hive_list": "operator", "hive_get": "operator", "hive_status": "operator",
    "hive_start": "operator", "hive_stop": "operator", "hive_refresh_capabilities": "operator",
    "script_get": "operator", "script_list": "operator", "script_test": "operator",
    "script_history": "operator", "script_rollback": "admin",
    "ssh_test": "admin", "hive_install": "admin", "hive_uninstall": "admin",
    "script_save": "admin", "script_delete": "admin", "script_activate": "admin",
}


def path_role(path: str) -> Role:
    for prefix, role in _PATH_ROLES:
        if path == prefix or path.startswith(f"{prefix}/"):
            return role
    return "user"


def operation_role(operation: str) -> Role:
    """An operation nobody listed is an admin's: a new one is never open by mistake."""
    return OPERATION_ROLES.get(operation, "admin")
