"""create_app(settings, services=None): the queen as an ASGI app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from fastapi import FastAPI
from starlette.types import ASGIApp, Scope

from rbee import __version__
from rbee.models.catalog import public_model
from rbee.queen import transcription
from rbee.queen.actor import Actor
from rbee.queen.auth import SCOPE_KEY, KeyAuth
from rbee.queen.dashboard import routes as dashboard
from rbee.queen.local_hive import LocalHive
from rbee.queen.request_metrics import MODEL_KEY, RequestMetrics
from rbee.queen.retention import Retention
from rbee.queen.routes import (
    admin,
    audit,
    cluster,
    files,
    gdpr,
    jobs,
    openai,
    quotas,
    responses,
    scheduler,
    videos,
)
from rbee.queen.routes import metrics as metrics_route
from rbee.queen.scrape_auth import METRICS_PATH
from rbee.queen.services import QueenServices, build_services
from rbee.queen.settings import QueenSettings
from rbee.storage.jobs import JobStore
from rbee.web.errors import install_error_handlers
from rbee.web.limits import BodyLimit
from rbee.web.origin import BrowserGuard, trusted_hosts

if TYPE_CHECKING:
    from rbee.tracing.tracer import Attributes, Tracing

logger = logging.getLogger(__name__)
OPEN_PATHS = frozenset({"/health", "/v1/hives/telemetry"})


def create_app(settings: QueenSettings, services: QueenServices | None = None, *,
               hive_token: str | None = None, worker_token: str | None = None,
               local_hive: LocalHive | None = None, tracing: Tracing | None = None
               ) -> ASGIApp:
    """The queen. Internal tokens default to fresh random ones (nobody outside needs them).

    `local_hive` may already be running (the server starts it before importing us).
    `tracing`: None (the default) installs nothing for it (docs/tracing.md).
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = services or build_services(settings, hive_token=hive_token,
                                         worker_token=worker_token, local_hive=local_hive,
                                         tracing=tracing)
        app.state.services = svc
        transcription.clear_stale_uploads(settings)
        audit_writer = asyncio.create_task(svc.audit.run(), name="audit-writer")
        archival = asyncio.create_task(svc.audit.archive_loop(), name="audit-archival")
        await svc.scripts.load_active()
        await svc.jobs.start()
        svc.usage.start()
        if svc.hive_supervisor is not None:
            svc.hive_supervisor.start()  # starts the local hive unless the server did
        watchdog = asyncio.create_task(svc.watchdog.run(), name="watchdog")
        liveness = asyncio.create_task(svc.liveness.run(), name="liveness")
        retention = asyncio.create_task(Retention(
            JobStore(svc.db), svc.responses, svc.artifacts, svc.clock,
            history=svc.settings.history_retention,
            artifacts_for=svc.settings.artifact_retention).run(), name="retention")
        try:
            yield
        finally:
            watchdog.cancel()
            liveness.cancel()
            retention.cancel()
            await svc.watchdog.stop()
            await svc.jobs.stop()
            await svc.usage.stop()
            if svc.hive_supervisor is not None:
                await svc.hive_supervisor.stop()  # no restarts; cascades to its workers
            await svc.relay.close()
            await svc.http.aclose()
            archival.cancel()
            # After everything that records (jobs, streams): what is pending is written.
            await svc.audit.close(audit_writer)
            svc.db.close()
            if tracing is not None:  # last: the spans of everything above are ended
                await tracing.close()

    # FastAPI's native OpenTelemetry looks up its providers on every request (~13 µs of a
    # half-millisecond budget); rbee exports no traces, and its metrics are its own (/metrics).
    app = FastAPI(title="queen-rbee", version=__version__, lifespan=lifespan,
                  telemetry={"tracing": False, "metrics": False, "logs": False,
                             "operation_spans": False})
    install_error_handlers(app)
    # The inference routes first: every request is matched route by route, and these are
    # the hot path (plain Starlette endpoints: FastAPI's dependency resolution is measurable
    # in a half-millisecond budget).
    for path, endpoint in (*openai.hot_routes, *transcription.hot_routes):
        app.add_route(path, endpoint, methods=["POST"])
    open_paths = OPEN_PATHS | mount_metrics(app, settings)
    for router in (cluster.router, openai.router, responses.router, jobs.router,
                   scheduler.router, admin.router, videos.router, audit.router, quotas.admin,
                   quotas.usage, files.router, gdpr.router):
        app.include_router(router)
    # Outermost first: the key is checked before a body is read. /health stays open, and
    # hives present their own secret with telemetry; the dashboard's session cookie is a
    # key too (dashboard.install adds its routes and returns the app's session store).
    # Uploads are bounded as they stream to disk (max_upload_bytes), never read whole first.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes,
                       skip_paths=frozenset({*transcription.UPLOAD_ROUTES,
                                             "/v1/images/edits", files.ROUTE}))
    app.add_middleware(KeyAuth, open_paths=open_paths | dashboard.OPEN_PATHS,
                       enabled=settings.api_token is not None, on_refused=audit_refusal,
                       open_prefixes=(dashboard.STATIC_PREFIX,),
                       sessions=dashboard.install(app))
    # Outermost: web pages (rebound Host, foreign Origin) are refused before anything else.
    app.add_middleware(BrowserGuard, allowed_origins=settings.allowed_origins,
                       allowed_hosts=trusted_hosts(settings.host, settings.api_token,
                                                   settings.public_url, settings.allowed_hosts))
    if settings.metrics:  # outermost: every answer is counted, refusals included
        app.add_middleware(RequestMetrics)
    if tracing is not None:  # outermost: a refused request's span says so too
        from rbee.tracing.middleware import TracedRequests

        app.add_middleware(TracedRequests, tracing=tracing, routes=TRACED_ROUTES,
                           describe=_described)
    return app


# The routes traced: inference, whose every request crosses queen → (hive) → worker.
TRACED_ROUTES = frozenset(path for path, _ in (*openai.hot_routes, *transcription.hot_routes))


def _described(scope: Scope) -> Attributes:
    """A traced request's model (public name) and tenant (its id), once they are known."""
    out: dict[str, str] = {}
    if MODEL_KEY in scope:
        out["rbee.model"] = public_model(scope[MODEL_KEY])  # a file: model's path: no
    principal = scope.get(SCOPE_KEY)
    if principal is not None and principal.tenant_id is not None:
        out["rbee.tenant.id"] = principal.tenant_id
    return out


def mount_metrics(app: FastAPI, settings: QueenSettings) -> frozenset[str]:
    """GET /metrics, when metrics are on; returns the paths KeyAuth leaves to it (it checks
    its own credentials: a scrape token is no API key)."""
    if not settings.metrics:
        return frozenset()
    for path, endpoint in metrics_route.routes:
        app.add_route(path, endpoint, methods=["GET"])
    return frozenset({METRICS_PATH})


def audit_refusal(scope: Scope, reason: str) -> None:
    """A refused credential goes to the audit log with the client's address (a pseudonym in
    the chain); before start-up completes there is no log yet to write to."""
    services: QueenServices | None = getattr(scope["app"].state, "services", None)
    if services is not None:
        client = scope.get("client")
        services.audit.auth_failure(reason, actor=Actor(client_ip=client[0] if client
                                                        else None), path=scope["path"])
