"""GET /metrics: the queen's metrics in the Prometheus text format (queen.metrics).

A plain Starlette endpoint with its own credential check: KeyAuth knows API keys only, and
the scrape token (queen.scrape_auth) must open this path and no other. Without it, the
caller needs a key whose role `path_role` asks for here (operator), as on any route.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from rbee.core.errors import NotFound, Unauthorized
from rbee.queen.actor import Actor
from rbee.queen.identity import path_role
from rbee.queen.scrape_auth import METRICS_PATH, is_scrape_token
from rbee.queen.services import QueenServices


def authorize(request: Request, svc: QueenServices) -> None:
    """Return if the caller may read the metrics; Unauthorized or Forbidden otherwise."""
    settings = svc.settings
    header = request.headers.get("authorization")
    if settings.metrics_public or is_scrape_token(header, settings.metrics_token):
        return
    try:
        principal = svc.keys.authenticate(header)
    except Unauthorized as exc:  # audited like KeyAuth's refusals: the reason, never the key
        client = request.client
        svc.audit.auth_failure(exc.message, actor=Actor(client_ip=client.host if client
                                                        else None), path=METRICS_PATH)
        raise
    principal.require(path_role(METRICS_PATH), METRICS_PATH)


async def scrape(request: Request) -> Response:
    svc: QueenServices = request.app.state.services
    authorize(request, svc)
    if svc.metrics is None:
        raise NotFound("this queen records no metrics (RBEE_QUEEN_METRICS=false)")
    # On the loop, not a thread: the collectors read loop-only state (registry, queues).
    # Named 0.0.4, the text format every Prometheus reads (Debian's 2.42 predates 1.0.0);
    # the body is the same, metric names being plain ASCII.
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_PLAIN_0_0_4)


routes = ((METRICS_PATH, scrape),)
