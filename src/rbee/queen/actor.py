"""Who did something, as the audit log records it (queen.audit): a module of its own, so
jobs, dispatch and identity name the actor without importing the audit log."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    """Who did it. Never a key or a token: the key's fingerprint at most."""

    tenant_id: str | None = None
    user_id: str | None = None
    key_fingerprint: str | None = None
    role: str | None = None
    client_ip: str | None = None

    def person(self) -> str | None:
        """Whose secret pseudonymises the personal fields: the user, else the client IP."""
        if self.user_id is not None:
            return self.user_id
        return f"ip:{self.client_ip}" if self.client_ip is not None else None

    def split(self) -> tuple[dict[str, str], dict[str, str]]:
        """(personal fields, plain fields). A key without a user (the bootstrap token) is
        not personal; a user's key is."""
        personal = {k: v for k, v in (("user_id", self.user_id),
                                      ("client_ip", self.client_ip)) if v is not None}
        plain = {"role": self.role} if self.role is not None else {}
        if self.key_fingerprint is not None:
            (personal if self.person() else plain)["key_fingerprint"] = self.key_fingerprint
        return personal, plain


ANONYMOUS = Actor()
