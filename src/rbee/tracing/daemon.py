"""What a daemon's entrypoint does about tracing: read where to, check it, start it.

The SDK is imported only when tracing is on: a daemon without an endpoint loads nothing of
OpenTelemetry's beyond what its web framework does anyway.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from rbee.tracing.config import BadEndpoint, traces_endpoint

if TYPE_CHECKING:
    from rbee.tracing.tracer import Tracing

logger = logging.getLogger(__name__)


def endpoint_or_exit(prog: str, env: Mapping[str, str], configured: str | None = None,
                     setting: str = "otlp_endpoint") -> str | None:
    """The traces URL (None: off). A malformed one is a one-line error and exit status 2,
    like every bad setting (web.listener.load_settings): a typo must not silently turn
    tracing off, and observability is not worth a traceback."""
    try:
        return traces_endpoint(env, configured, setting)
    except BadEndpoint as exc:
        print(f"{prog}: bad setting {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def tracing_for(service: str, endpoint: str | None, instance: str | None = None
                ) -> Tracing | None:
    if endpoint is None:
        return None
    from rbee.tracing.tracer import start_tracing

    parts = urlsplit(endpoint)  # without any user:password@ (never logged)
    logger.info("exporting traces to %s://%s%s", parts.scheme,
                parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}",
                parts.path)
    return start_tracing(service, endpoint, instance=instance)
