"""The worker's HTTP API: health, readiness, and OpenAI chat/text completions."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import tempfile
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rbee.api.cluster import DEADLINE_HEADER, ReadyStatus
from rbee.api.embeddings import EmbeddingRequest
from rbee.api.images import EDIT_FILES, ImageRequest, edit_request
from rbee.api.openai import ChatCompletionRequest, CompletionRequest, ModelCard, ModelList
from rbee.api.speech import SpeechRequest
from rbee.api.transcription import Task
from rbee.core.errors import DeadlineExceeded, InvalidRequest
from rbee.core.loop_watchdog import watching
from rbee.core.states import WorkerState
from rbee.engines.base import GenerationRequest, Output
from rbee.web.auth import check_bearer
from rbee.web.body import parse_body
from rbee.web.errors import exception_handlers
from rbee.web.limits import BodyLimit
from rbee.web.streaming import DisconnectAwareStream, unless_disconnected
from rbee.web.uploads import receive_form
from rbee.worker import embeddings, images, speech, transcription, video
from rbee.worker.requests import DEFAULT_MAX_N, generation_requests
from rbee.worker.responses import Formatter, Indexed, Kind, collect, sse_stream
from rbee.worker.runtime import Runtime

if TYPE_CHECKING:
    from rbee.tracing.tracer import Tracing

# The upload endpoints and the task each does (multipart forms, not JSON bodies).
UPLOAD_ROUTES: dict[str, Task] = {"/v1/audio/transcriptions": "transcribe",
                                  "/v1/audio/translations": "translate"}
EDIT_ROUTE = "/v1/images/edits"  # a multipart upload, bounded as it streams to disk


async def _as_json(work: Awaitable[dict[str, Any]]) -> Response:
    return JSONResponse(await work)


def _health(runtime: Runtime) -> Response:
    body: dict[str, Any] = {"status": "ok", "state": runtime.state.value, "load": runtime.load}
    stalled = runtime.stalled_for()
    if stalled is not None:  # alive, but the engine is stuck: not a worker to route to
        body.update(status="stalled", stalled_seconds=round(stalled, 1))
        return JSONResponse(body, status_code=503)
    return JSONResponse(body)


async def _ready(runtime: Runtime, model: str, _: Request) -> Response:
    status = ReadyStatus(ready=runtime.state is WorkerState.READY, state=runtime.state,
                         progress=runtime.progress, stage=runtime.stage, error=runtime.error,
                         model=model, load=runtime.load, slots=runtime.slots)
    return JSONResponse(status.model_dump(mode="json"), status_code=200 if status.ready else 503)


async def _choices(runtime: Runtime, requests: list[GenerationRequest], until: float | None
                   ) -> AsyncIterator[Indexed]:
    """Each choice's outputs in turn (the engine's slots go to one request's choices one at
    a time, so other requests are not held up behind all n)."""
    for index, generation in enumerate(requests):
        outputs = runtime.generate(generation)
        if until is not None:
            outputs = within(outputs, until)
        async with contextlib.aclosing(outputs) as items:  # type: ignore[type-var]
            async for item in items:
                yield index, item


def _deadline(request: Request) -> float | None:
    """The queen passes the client's remaining time; past it the engine stops."""
    raw = request.headers.get(DEADLINE_HEADER)
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        raise InvalidRequest(f"{DEADLINE_HEADER} must be a number of seconds") from None
    if not 0 < seconds < math.inf:
        raise InvalidRequest(f"{DEADLINE_HEADER} must be a positive number of seconds")
    return asyncio.get_running_loop().time() + seconds


async def within(outputs: AsyncIterator[Output], until: float) -> AsyncIterator[Output]:
    """`outputs` until loop time `until`, checked at each token (a timeout scope can't span a
    generator's yields); then the generation is cancelled and DeadlineExceeded ends the
    answer (an error frame mid-stream). A worker stuck inside one token is the queen's
    to end (its idle deadline)."""
    loop = asyncio.get_running_loop()
    try:
        async for item in outputs:
            if loop.time() >= until:
                raise DeadlineExceeded("the request's deadline passed during generation")
            yield item
    finally:  # also when we are closed (a hang-up): the engine stops now, not at GC
        await outputs.aclose()  # type: ignore[attr-defined]


async def _embeddings(runtime: Runtime, model: str, request: Request) -> Response:
    body = await parse_body(request, EmbeddingRequest)
    embedder = runtime.embedder()  # a chat model's worker: a 400 saying so
    runtime.require_ready()
    embeddings.check_dimensions(body, embedder, model)
    sequences = embeddings.token_ids(embedder, body, model)
    until = _deadline(request)

    async def answer() -> Response:
        vectors = await runtime.embed(sequences)
        out = embeddings.response(body, model, vectors, sum(map(len, sequences)))
        # pydantic-core's JSON: 64 vectors of 384 floats in 1.8 ms, json.dumps took 11 ms
        return Response(out.model_dump_json(), media_type="application/json")

    if until is None:
        return await unless_disconnected(request, answer())
    try:  # the engine call itself can't be stopped midway; its answer is dropped
        async with asyncio.timeout_at(until):
            return await unless_disconnected(request, answer())
    except TimeoutError:
        raise DeadlineExceeded("the request's deadline passed while embedding") from None


async def _speech(runtime: Runtime, model: str, token: str | None,
                  request: Request) -> Response:
    check_bearer(request.headers.get("authorization"), token)
    body = await parse_body(request, SpeechRequest)
    return await speech.speak(runtime, body, model, _deadline(request))


async def _transcription(runtime: Runtime, model: str, token: str | None,
                         limits: transcription.Limits, task: Task, request: Request
                         ) -> Response:
    check_bearer(request.headers.get("authorization"), token)
    return await transcription.transcribe(runtime, request, model, task, limits,
                                          _deadline(request))


def _upload_routes(runtime: Runtime, model: str, token: str | None,
                   limits: transcription.Limits) -> list[Route]:
    return [Route(path, functools.partial(_transcription, runtime, model, token, limits, task),
                  methods=["POST"]) for path, task in UPLOAD_ROUTES.items()]
async def _images(runtime: Runtime, model: str, token: str | None, request: Request
                  ) -> Response:
    check_bearer(request.headers.get("authorization"), token)
    body = await parse_body(request, ImageRequest)
    images.check_stored_nowhere(body)
    runtime.image_maker()  # another kind of model: a 400 saying so
    runtime.require_ready()  # a 503 the queen can fail over
    return await images.answer(runtime, body, images.job_of(body, body.dimensions()),
                               _deadline(request))


async def _edit(runtime: Runtime, model: str, token: str | None,
                limits: transcription.Limits, request: Request) -> Response:
    """The form's pictures to disk (bounded as they stream), decoded, then removed."""
    check_bearer(request.headers.get("authorization"), token)
    form = await receive_form(request, directory=limits.upload_dir,
                              max_file_bytes=limits.max_upload_bytes, file_fields=EDIT_FILES)
    try:
        body = edit_request(form.fields)
        images.check_stored_nowhere(body)
        runtime.image_maker()  # another kind of model: a 400 saying so
        runtime.require_ready()  # a 503 the queen can fail over, before an edit's checks
        files = form.files
        job = images.edit_job(runtime, body, files["image"].path if "image" in files else None,
                              files["mask"].path if "mask" in files else None, model)
    finally:  # decoded (or refused): the files are not needed any more
        form.remove()
    return await images.answer(runtime, body, job, _deadline(request))


def create_app(runtime: Runtime, *, model: str, token: str | None = None,
               max_n: int = DEFAULT_MAX_N, uploads: transcription.Limits | None = None,
               tracing: Tracing | None = None, stall_limit: float = 0.0) -> Starlette:
    """Plain Starlette, not FastAPI: the worker's import time is on the cold-start path.
    `tracing`: a server span per inference request and a generation span under it (None:
    nothing is traced, nothing of OpenTelemetry's is loaded). `stall_limit`: seconds the
    event loop may not run before the worker exits (core.loop_watchdog; 0: never)."""
    videos = video.VideoFiles()

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with watching(stall_limit):
            loader = asyncio.create_task(runtime.load_engine())
            yield
        loader.cancel()
        runtime.close()
        videos.close()
        await _close(tracing)

    def auth(request: Request) -> None:
        check_bearer(request.headers.get("authorization"), token)

    async def health(_: Request) -> Response:
        return _health(runtime)

    async def models(request: Request) -> Response:
        auth(request)
        return JSONResponse(ModelList(data=[ModelCard(id=model, created=0)]).model_dump())

    async def complete(kind: Kind, body: ChatCompletionRequest | CompletionRequest,
                       request: Request) -> Response:
        engine = runtime.generator()  # an embedding model's worker: a 400 saying so
        runtime.require_ready()  # before any header goes out: a 503 the queen can fail over
        requests = generation_requests(body, model=body.model or model,
                                       vision=engine.vision, max_n=max_n)
        fmt = Formatter(kind, body.model or model,
                        logprobs=requests[0].logprobs is not None)
        outputs = _traced(tracing, _choices(runtime, requests, _deadline(request)), model,
                          kind)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return DisconnectAwareStream(sse_stream(outputs, fmt, include_usage))
        return await unless_disconnected(request, _as_json(collect(outputs, fmt)))

    async def chat(request: Request) -> Response:
        auth(request)
        return await complete("chat", await parse_body(request, ChatCompletionRequest), request)

    async def completions(request: Request) -> Response:
        auth(request)
        return await complete("completion", await parse_body(request, CompletionRequest), request)

    async def embed(request: Request) -> Response:
        auth(request)
        return await _embeddings(runtime, model, request)

    routes = [
        Route("/health", health), Route("/ready", functools.partial(_ready, runtime, model)),
        Route("/v1/models", models),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/embeddings", embed, methods=["POST"]),
        Route("/v1/audio/speech", functools.partial(_speech, runtime, model, token),
              methods=["POST"]),
        Route("/v1/images/generations", functools.partial(_images, runtime, model, token),
              methods=["POST"]),
        *video.routes(runtime, videos, auth, _deadline),
    ]
    limits = uploads or transcription.Limits(Path(tempfile.gettempdir()), 64 * 1024 * 1024)
    routes += _upload_routes(runtime, model, token, limits)
    routes.append(Route(EDIT_ROUTE, functools.partial(_edit, runtime, model, token, limits),
                        methods=["POST"]))
    # Uploads bound themselves as they stream to disk (web.uploads); BodyLimit would hold
    # them whole in memory first.
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers=exception_handlers(),
                     middleware=_middleware(routes, tracing))


async def _close(tracing: Tracing | None) -> None:
    if tracing is not None:  # pending spans exported before we exit
        await tracing.close()


def _traced(tracing: Tracing | None, outputs: AsyncIterator[Indexed], model: str,
            kind: Kind) -> AsyncIterator[Indexed]:
    if tracing is None:
        return outputs
    from rbee.models.catalog import public_model  # a file: model by its file name, no path
    from rbee.tracing.generation import traced

    return traced(tracing, outputs, {"rbee.model": public_model(model), "rbee.kind": kind})


def _middleware(routes: list[Route], tracing: Tracing | None) -> list[Middleware]:
    middleware = [Middleware(BodyLimit, skip_paths=frozenset({*UPLOAD_ROUTES, EDIT_ROUTE}))]
    if tracing is not None:  # outermost: the span covers the whole answer
        from rbee.tracing.middleware import TracedRequests

        posts = frozenset(r.path for r in routes if r.methods and "POST" in r.methods)
        middleware.insert(0, Middleware(TracedRequests, tracing=tracing, routes=posts,
                                        joined_only=True))  # the queen's traced calls
    return middleware
