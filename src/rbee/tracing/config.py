"""Where traces go: rbee's own setting, else the standard OpenTelemetry environment variables.

Pure (no OpenTelemetry import): a daemon decides here whether tracing is on before it loads
the SDK at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

TRACES_ENV = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"  # the traces URL, used as given
BASE_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"  # a collector's base URL: /v1/traces is appended
TRACES_PATH = "/v1/traces"
_MAX_URL = 2048


class BadEndpoint(ValueError):
    """A configured OTLP endpoint that is not an http(s) URL: the message names its source."""


def traces_endpoint(env: Mapping[str, str], configured: str | None = None,
                    setting: str = "otlp_endpoint") -> str | None:
    """The OTLP/HTTP traces URL, or None: tracing is off.

    `configured` (rbee's setting, e.g. RBEE_QUEEN_OTLP_ENDPOINT) wins; a URL without a path
    gets /v1/traces. Then OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as given, then
    OTEL_EXPORTER_OTLP_ENDPOINT plus /v1/traces (the OpenTelemetry specification's rules).
    OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none turn tracing off whatever is set.
    """
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return None
    if configured:
        url = _checked(configured, setting)
        return url + TRACES_PATH if urlsplit(url).path in ("", "/") and not url.endswith(
            TRACES_PATH) else url
    if env.get(TRACES_ENV):
        return _checked(env[TRACES_ENV], TRACES_ENV)
    if env.get(BASE_ENV):
        return _checked(env[BASE_ENV], BASE_ENV).rstrip("/") + TRACES_PATH
    return None


def _checked(url: str, source: str) -> str:
    """The URL without surrounding blanks (or a trailing slash), or BadEndpoint."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        parts = None
    if (parts is None or len(url) > _MAX_URL or parts.scheme not in ("http", "https")
            or not parts.hostname or any(c.isspace() or ord(c) < 32 for c in url)):
        shown = url[:80] + ("..." if len(url) > 80 else "")
        raise BadEndpoint(f"{source}: {shown!r} is not an OTLP/HTTP URL (e.g. "
                          "http://collector:4318)")
    return url.rstrip("/")
