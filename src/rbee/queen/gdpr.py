"""GDPR: a person's export, erasure (with a signed receipt) and consent, by user id.

Who may ask: an admin key (or the bootstrap token) about anyone; any other key about its
own user only. Any other subject — unknown, or someone else — is the same 404 naming
`subject`, so a key cannot learn which user ids exist.

Erasure removes the account rather than anonymising it: the user row, its keys (revoked
in memory first, so the next request is refused), its jobs with their events and
artifacts, its stored Responses and consents; usage rows of its keys are folded into
per-tenant aggregates (key `erased`), so the tenant's bill stays right; the audit log's
personal fields are crypto-shredded (`AuditLog.erase_subject`), so the chain still
verifies. Then the database file is compacted so no deleted bytes stay on disk.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from rbee.api.gdpr import Consent, ConsentRequest, Receipt
from rbee.api.identity import KeyInfo, User
from rbee.core.clock import Clock
from rbee.core.errors import NotFound
from rbee.queen.actor import Actor
from rbee.queen.audit import AuditLog, Person
from rbee.queen.consent import Consents
from rbee.queen.erased import Erased
from rbee.queen.identity import KeyRing, Principal
from rbee.queen.jobs import JobManager
from rbee.queen.quotas import Quotas
from rbee.queen.receipts import ReceiptSigner
from rbee.queen.usage import UsageLog
from rbee.storage.artifacts import ArtifactStore
from rbee.storage.gdpr import GdprStore
from rbee.storage.identity import IdentityStore
from rbee.storage.jobs import JobStore

EXPORT_FORMAT = "rbee-gdpr-export/1"
DRAIN_SECONDS = 10.0  # how long an erasure waits for the person's requests in flight


@dataclass(frozen=True)
class Holdings:
    """Where a person's data is kept."""

    identity: IdentityStore
    jobs: JobStore
    store: GdprStore
    artifacts: ArtifactStore
    usage: UsageLog


class Gdpr:
    def __init__(self, held: Holdings, *, keys: KeyRing, jobs: JobManager, audit: AuditLog,
                 consents: Consents, signer: ReceiptSigner, clock: Clock, quotas: Quotas,
                 drain_seconds: float = DRAIN_SECONDS, erased: Erased | None = None) -> None:
        self._held = held
        self._keys = keys
        self._jobs = jobs
        self._audit = audit
        self.consents = consents
        self._signer = signer
        self._clock = clock
        self._quotas = quotas
        self._drain_seconds = drain_seconds
        self.erased = erased or Erased()

    def subject(self, principal: Principal, subject: str) -> User:
        """The user `subject` names, when `principal` may ask about them (blocking)."""
        user = self._held.identity.user(subject)
        if user is None or not (principal.can("admin") or principal.user_id == subject):
            raise NotFound(f"no subject {subject[:80]!r} (a user id this key may ask about)",
                           param="subject")
        return user

    # -- export
    async def export(self, principal: Principal, subject: str, actor: Actor) -> dict[str, Any]:
        user = await asyncio.to_thread(self.subject, principal, subject)
        await self._held.usage.flush()  # today's use is in the table before it is read
        data = await asyncio.to_thread(self._collect, user)
        data["audit"] = await self._audit.entries_about(user.id)
        self._audit.record("gdpr.export", actor=actor, subject=Person(user.id), outcome="ok")
        return data

    def _collect(self, user: User) -> dict[str, Any]:
        held = self._held
        tenant = held.identity.tenant(user.tenant_id)
        keys = self._keys_of(user)
        job_ids = held.store.job_ids(user.id)
        owned = set(job_ids)
        jobs = []
        for job_id in job_ids:
            summary = held.jobs.get(job_id)
            if summary is not None:
                jobs.append({**summary.model_dump(mode="json"),
                             "events": [e.model_dump(mode="json")
                                        for e in held.jobs.events(job_id)]})
        return {
            "format": EXPORT_FORMAT, "subject": user.id, "exported_at": self._clock.time(),
            "user": user.model_dump(mode="json"),
            "tenant": {"id": user.tenant_id, "name": tenant.name if tenant else None},
            "keys": [k.model_dump(mode="json") for k in keys],
            "usage": [r.model_dump(mode="json") for k in keys
                      for r in held.usage.store.usage(key_id=k.id)],
            "jobs": jobs,
            "responses": held.store.responses(user.id),
            "artifacts": [{"id": a.id, "url": a.url, "media_type": a.media_type,
                           "bytes": a.bytes, "created_at": a.created_at, "job_id": a.owner}
                          for a in held.artifacts.list() if a.owner in owned],
            "consents": [c.model_dump(mode="json") for c in held.store.consents(user.id)],
            "script_versions": held.store.script_versions(user.id),
        }

    def _keys_of(self, user: User) -> list[KeyInfo]:
        return [info for info, _ in self._held.identity.all_keys(user.tenant_id)
                if info.user_id == user.id]

    # -- erasure
    async def erase(self, principal: Principal, subject: str, actor: Actor) -> Receipt:
        held = self._held
        user = await asyncio.to_thread(self.subject, principal, subject)
        keys = await asyncio.to_thread(self._keys_of, user)
        self._keys.forget_user(user.id)  # refused from the next request on
        self.consents.forget(user.id)
        for job_id in await asyncio.to_thread(held.store.job_ids, user.id, True):
            await self._jobs.cancel(job_id)  # a running job would write events back
        # From now on, what their requests still in flight write is written without them
        self.erased.add(user.id, (k.id for k in keys))
        await self._drain(keys)
        await held.usage.flush()
        gone = await asyncio.to_thread(held.store.erase, user.id)
        artifacts = await asyncio.to_thread(self._delete_artifacts, set(gone.job_ids))
        await asyncio.to_thread(self._keys.reload)
        if principal.user_id == user.id:  # their own request: the entry must not name them
            actor = Actor(tenant_id=actor.tenant_id, role=actor.role)
        audit = await self._audit.erase_subject(user.id, actor=actor)
        await asyncio.to_thread(held.store.compact)
        receipt = Receipt(
            subject=user.id, erased_at=audit.pop("erased_at"), user="removed",
            deleted={"jobs": len(gone.job_ids), "responses": gone.responses,
                     "artifacts": artifacts, "keys": gone.keys, "consents": gone.consents,
                     "usage_rows_aggregated": gone.usage_rows,
                     "script_versions_unnamed": gone.script_versions},
            audit={k: v for k, v in audit.items() if k != "subject"})
        return Receipt.model_validate(self._signer.sign(receipt.model_dump(mode="json")))

    async def _drain(self, keys: list[KeyInfo]) -> None:
        """Wait, a bounded time, for the requests their keys have in flight to end: each
        ends by writing an audit entry (with their clear personal fields), its usage and
        perhaps a stored Response in their name, which must come before the erasure."""
        loop = asyncio.get_running_loop()
        until = loop.time() + self._drain_seconds
        while any(self._quotas.in_flight("key", k.id) for k in keys) and loop.time() < until:
            await asyncio.sleep(0.02)

    def _delete_artifacts(self, owners: set[str]) -> int:
        store = self._held.artifacts
        return sum(store.delete(a.id) for a in store.list() if a.owner in owners)

    def verify(self, receipt: dict[str, Any]) -> bool:
        return self._signer.verify(receipt)

    # -- consent
    async def consent(self, principal: Principal, body: ConsentRequest, actor: Actor
                      ) -> Consent:
        user = await asyncio.to_thread(self.subject, principal, body.subject)
        consent = Consent(subject=user.id, purpose=body.purpose, granted=body.granted,
                          at=self._clock.time(), by_key=principal.key_id)
        await asyncio.to_thread(self.consents.record, consent)
        self._audit.record("gdpr.consent", actor=actor, subject=Person(user.id), outcome="ok",
                           details={"purpose": body.purpose, "granted": body.granted})
        return consent
