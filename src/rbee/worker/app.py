"""The worker's HTTP API: health, readiness, and OpenAI chat/text completions."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from rbee.api.cluster import ReadyStatus
from rbee.api.openai import ChatCompletionRequest, CompletionRequest, ModelCard, ModelList
from rbee.core.states import WorkerState
from rbee.engines.base import GenerationRequest
from rbee.web.auth import check_bearer
from rbee.web.body import parse_body
from rbee.web.errors import install_error_handlers
from rbee.web.limits import BodyLimit
from rbee.web.streaming import DisconnectAwareStream, unless_disconnected
from rbee.worker.responses import Formatter, Kind, collect, sse_stream
from rbee.worker.runtime import Runtime


def _generation(body: ChatCompletionRequest | CompletionRequest) -> GenerationRequest:
    common: dict[str, Any] = dict(
        max_tokens=body.token_limit(), temperature=body.temperature, top_p=body.top_p,
        top_k=body.top_k, seed=body.seed, stop=body.stop_list(),
    )
    if isinstance(body, ChatCompletionRequest):
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        return GenerationRequest(kind="chat", messages=messages, **common)
    return GenerationRequest(kind="completion", prompt=body.prompt_text(), **common)


async def _as_json(work: Awaitable[dict[str, Any]]) -> Response:
    return JSONResponse(await work)


def create_app(  # noqa: C901 - route closures
    runtime: Runtime, *, model: str, token: str | None = None,
               on_startup: Callable[[], Awaitable[None]] | None = None) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loader = asyncio.create_task(runtime.load_engine())
        if on_startup is not None:
            await on_startup()
        yield
        loader.cancel()
        runtime.close()

    app = FastAPI(title="rbee worker", lifespan=lifespan, docs_url=None, redoc_url=None)
    install_error_handlers(app)

    async def auth(request: Request) -> None:
        check_bearer(request.headers.get("authorization"), token)

    authed = [Depends(auth)]

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "state": runtime.state.value, "load": runtime.load}

    @app.get("/ready", response_model=ReadyStatus)
    async def ready() -> JSONResponse:
        status = ReadyStatus(ready=runtime.state is WorkerState.READY, state=runtime.state,
                             progress=runtime.progress, stage=runtime.stage, error=runtime.error,
                             model=model, load=runtime.load)
        code = 200 if status.ready else 503
        return JSONResponse(status.model_dump(mode="json"), status_code=code)

    @app.get("/v1/models", dependencies=authed)
    async def models() -> ModelList:
        return ModelList(data=[ModelCard(id=model, created=0)])

    async def complete(kind: Kind, body: ChatCompletionRequest | CompletionRequest,
                       request: Request) -> Response:
        fmt = Formatter(kind, body.model or model)
        outputs = runtime.generate(_generation(body))
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return DisconnectAwareStream(sse_stream(outputs, fmt, include_usage))
        return await unless_disconnected(request, _as_json(collect(outputs, fmt)))

    @app.post("/v1/chat/completions", dependencies=authed)
    async def chat(request: Request) -> Response:
        return await complete("chat", await parse_body(request, ChatCompletionRequest), request)

    @app.post("/v1/completions", dependencies=authed)
    async def completions(request: Request) -> Response:
        return await complete("completion", await parse_body(request, CompletionRequest), request)

    app.add_middleware(BodyLimit)
    return app
