"""Signed erasure receipts: HMAC-SHA256 under a secret only this queen holds.

The secret (32 random bytes) is created on first use in the state directory, mode 0600,
beside the database; the signature covers the canonical JSON (sorted keys, no spaces,
UTF-8) of every field but `signature`. Anyone may ask the queen whether a receipt is one
it issued (`POST /gdpr/receipts/verify`, `rbee gdpr verify-receipt`). HMAC, not a public-key
signature: no extra dependency, and the party checking a receipt asks the queen that
issued it; it proves nothing to someone who cannot reach it (see docs/gdpr.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from pathlib import Path
from typing import Any

from rbee.core.private import secret_file

PREFIX = "hmac-sha256:"


class ReceiptSigner:
    def __init__(self, secret_file: Path) -> None:
        self._file = secret_file

    def sign(self, receipt: dict[str, Any]) -> dict[str, Any]:
        """The receipt with its `signature`."""
        body = {k: v for k, v in receipt.items() if k != "signature"}
        return {**body, "signature": PREFIX + self._mac(body)}

    def verify(self, receipt: dict[str, Any]) -> bool:
        signature = receipt.get("signature")
        if not isinstance(signature, str) or not signature.startswith(PREFIX):
            return False
        body = {k: v for k, v in receipt.items() if k != "signature"}
        return hmac.compare_digest(signature[len(PREFIX):].encode(), self._mac(body).encode())

    def _mac(self, body: dict[str, Any]) -> str:
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"),
                               ensure_ascii=False).encode()
        return hmac.new(self._secret(), canonical, hashlib.sha256).hexdigest()

    def _secret(self) -> bytes:
        return secret_file(self._file, lambda: secrets.token_bytes(32))
