"""The hive's HTTP API: capabilities and worker lifecycle. Inference never passes here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Request

from rbee import __version__
from rbee.api.cluster import Device, SpawnWorker, WorkerInfo
from rbee.core.loop_watchdog import watching
from rbee.hive.services import HiveServices, preload
from rbee.web.auth import check_bearer
from rbee.web.body import parse_body
from rbee.web.errors import install_error_handlers
from rbee.web.limits import BodyLimit
from rbee.web.origin import BrowserGuard, trusted_hosts

if TYPE_CHECKING:
    from rbee.tracing.tracer import Tracing

logger = logging.getLogger(__name__)


def create_app(services: HiveServices,  # noqa: C901 - route closures
               tracing: Tracing | None = None) -> FastAPI:
    """`tracing`: a span per spawn, joined to the queen's request (None: nothing traced)."""
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        reporter_task = None
        preload(services)  # no-op when the server already launched it before start-up
        services.supervisor.supervise_launched()
        if services.reporter is not None:
            reporter_task = asyncio.create_task(services.reporter.run(), name="telemetry")
        # One line at start: the first thing to read in a remote hive's log (uvicorn is quiet).
        logger.info("hive %s up (rbee %s); %s", services.hive_id, __version__,
                    f"reporting to {services.reporter.queen_url}" if services.reporter
                    else "not reporting to any queen")
        try:
            async with watching(services.stall_limit):
                yield
        finally:
            if reporter_task:
                reporter_task.cancel()
            await services.supervisor.stop_all()  # cascade: no orphan workers
            if services.reporter is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(services.reporter.send_once(), 1.0)
            await services.http.aclose()
            if tracing is not None:  # pending spans exported before we exit
                await tracing.close()

    app = FastAPI(title="rbee-hive", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None)
    install_error_handlers(app)

    async def auth(request: Request) -> None:
        check_bearer(request.headers.get("authorization"), services.token)

    sup = services.supervisor

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "hive_id": services.hive_id, "version": __version__}

    @app.get("/v1/capabilities", dependencies=[Depends(auth)])
    async def capabilities() -> dict[str, list[Device]]:
        return {"devices": await services.devices.devices()}

    @app.get("/v1/workers", dependencies=[Depends(auth)])
    async def list_workers() -> list[WorkerInfo]:
        return sup.workers()

    @app.post("/v1/workers", dependencies=[Depends(auth)], status_code=202)
    async def spawn(request: Request) -> WorkerInfo:
        info = sup.spawn(await parse_body(request, SpawnWorker))
        if tracing is not None:
            from rbee.models.catalog import public_model
            from rbee.tracing.middleware import current_span_attributes

            current_span_attributes({"rbee.worker.id": info.id,
                                     "rbee.model": public_model(info.model),
                                     "rbee.device": info.device})
        return info

    @app.get("/v1/workers/{worker_id}", dependencies=[Depends(auth)])
    async def get_worker(worker_id: str) -> WorkerInfo:
        return sup.get(worker_id)

    @app.delete("/v1/workers/{worker_id}", dependencies=[Depends(auth)])
    async def stop_worker(worker_id: str) -> WorkerInfo:
        return await sup.stop(worker_id)

    app.add_middleware(BodyLimit, max_bytes=1024 * 1024)
    if tracing is not None:
        from rbee.tracing.middleware import TracedRequests

        app.add_middleware(TracedRequests, tracing=tracing, routes=frozenset({"/v1/workers"}),
                           joined_only=True)
    # No browser has business here: a foreign Origin, or a rebound Host on a hive without a
    # token (one started by hand on loopback), is refused before anything else.
    cfg = services.supervisor.config
    names = () if services.token else (cfg.advertise_host,)
    app.add_middleware(BrowserGuard, allowed_origins=(),
                       allowed_hosts=trusted_hosts(cfg.bind_host, services.token, None, names))
    return app
