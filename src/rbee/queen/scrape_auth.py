"""Who may scrape /metrics: an operator's or admin's key (as any route), a dedicated scrape
token (Prometheus's `authorization: credentials_file`), or anyone when the queen serves
metrics openly, which it only does on loopback.

The scrape token opens /metrics and nothing else; it is compared in constant time and never
logged. Light on imports: the server checks its settings with it before its heavy imports.
"""

from __future__ import annotations

import hmac

from rbee.queen.settings import QueenSettings
from rbee.web.auth import is_loopback

METRICS_PATH = "/metrics"


def refuse_open_metrics(settings: QueenSettings) -> None:
    """Metrics without auth only on a loopback bind (they name hives, models and tenants)."""
    if settings.metrics and settings.metrics_public and not is_loopback(settings.host):
        raise SystemExit(f"queen-rbee: refusing to serve {METRICS_PATH} without auth on "
                         f"{settings.host}; set RBEE_QUEEN_METRICS_TOKEN (and unset "
                         "RBEE_QUEEN_METRICS_PUBLIC) or bind 127.0.0.1")


def is_scrape_token(header: str | None, token: str | None) -> bool:
    """Whether an `Authorization` header carries the scrape token (constant time)."""
    if not token or not header or header[:7].lower() != "bearer ":
        return False  # an empty token opens nothing (settings refuse one anyway)
    presented = header[7:].strip()
    return bool(presented) and hmac.compare_digest(presented.encode(), token.encode())
