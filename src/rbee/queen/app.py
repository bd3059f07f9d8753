"""create_app(settings, services=None): the queen as an ASGI app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.types import ASGIApp, Scope

from rbee import __version__
from rbee.queen import transcription
from rbee.queen.actor import Actor
from rbee.queen.auth import KeyAuth
from rbee.queen.dashboard import routes as dashboard
from rbee.queen.local_hive import LocalHive
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
from rbee.queen.services import QueenServices, build_services
from rbee.queen.settings import QueenSettings
from rbee.storage.jobs import JobStore
from rbee.web.errors import install_error_handlers
from rbee.web.limits import BodyLimit
from rbee.web.origin import BrowserGuard, trusted_hosts

logger = logging.getLogger(__name__)
OPEN_PATHS = frozenset({"/health", "/v1/hives/telemetry"})


def create_app(settings: QueenSettings, services: QueenServices | None = None, *,
               hive_token: str | None = None, worker_token: str | None = None,
               local_hive: LocalHive | None = None) -> ASGIApp:
    """The queen. Internal tokens default to fresh random ones (nobody outside needs them).

    `local_hive` may already be running (the server starts it before importing us).
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = services or build_services(settings, hive_token=hive_token,
                                         worker_token=worker_token, local_hive=local_hive)
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

    # FastAPI's native OpenTelemetry looks up its providers on every request (~13 µs of a
    # half-millisecond budget); rbee exports no traces. Metrics come with issue 14.
    app = FastAPI(title="queen-rbee", version=__version__, lifespan=lifespan,
                  telemetry={"tracing": False, "metrics": False, "logs": False,
                             "operation_spans": False})
    install_error_handlers(app)
    # The inference routes first: every request is matched route by route, and these are
    # the hot path (plain Starlette endpoints: FastAPI's dependency resolution is measurable
    # in a half-millisecond budget).
    for path, endpoint in (*openai.hot_routes, *transcription.hot_routes):
        app.add_route(path, endpoint, methods=["POST"])
    app.include_router(cluster.router)
    app.include_router(openai.router)
    app.include_router(responses.router)
    app.include_router(jobs.router)
    app.include_router(scheduler.router)
    app.include_router(admin.router)
    app.include_router(videos.router)
    app.include_router(audit.router)
    app.include_router(quotas.admin)
    app.include_router(quotas.usage)
    app.include_router(files.router)
    app.include_router(gdpr.router)
    # Outermost first: the key is checked before a body is read. /health stays open, and
    # hives present their own secret with telemetry; the dashboard's session cookie is a
    # key too (dashboard.install adds its routes and returns the app's session store).
    # Uploads are bounded as they stream to disk (max_upload_bytes), never read whole first.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes,
                       skip_paths=frozenset({*transcription.UPLOAD_ROUTES,
                                             "/v1/images/edits", files.ROUTE}))
    app.add_middleware(KeyAuth, open_paths=OPEN_PATHS | dashboard.OPEN_PATHS,
                       enabled=settings.api_token is not None, on_refused=audit_refusal,
                       open_prefixes=(dashboard.STATIC_PREFIX,),
                       sessions=dashboard.install(app))
    # Outermost: web pages (rebound Host, foreign Origin) are refused before anything else.
    app.add_middleware(BrowserGuard, allowed_origins=settings.allowed_origins,
                       allowed_hosts=trusted_hosts(settings.host, settings.api_token,
                                                   settings.public_url, settings.allowed_hosts))
    return app


def audit_refusal(scope: Scope, reason: str) -> None:
    """A refused credential goes to the audit log with the client's address (a pseudonym in
    the chain); before start-up completes there is no log yet to write to."""
    services: QueenServices | None = getattr(scope["app"].state, "services", None)
    if services is not None:
        client = scope.get("client")
        services.audit.auth_failure(reason, actor=Actor(client_ip=client[0] if client
                                                        else None), path=scope["path"])
