"""OpenAI-compatible endpoints: /v1/models, /v1/chat/completions, /v1/completions,
/v1/embeddings, /v1/audio/speech, /v1/images/generations, /v1/images/edits (transcriptions:
queen.transcription)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import cast

from fastapi import APIRouter, Request, Response

from rbee.api.cluster import WorkerInfo
from rbee.api.embeddings import EmbeddingRequest
from rbee.api.images import ImageRequest, edit_request
from rbee.api.openai import ChatCompletionRequest, CompletionRequest, ModelCard, ModelList
from rbee.api.speech import MEDIA_TYPES, SpeechRequest
from rbee.core.errors import DeadlineExceeded, InvalidRequest, ModelNotFound
from rbee.models.catalog import ModelRef, parse_ref, require_kind
from rbee.queen import images
from rbee.queen.actor import ANONYMOUS
from rbee.queen.admission import PRIORITIES, Ticket
from rbee.queen.audio import forward_audio
from rbee.queen.audit_trail import Trail
from rbee.queen.auth import principal_of
from rbee.queen.calls import ClientDeadline, client_deadline
from rbee.queen.deps import ServicesDep
from rbee.queen.dispatch import Hints, Silent
from rbee.queen.failover import with_failover
from rbee.queen.metering import (
    demand_for,
    metered_pipe,
    speech_use,
    text_demand,
    used_in,
    with_usage,
)
from rbee.queen.operations import model_entries
from rbee.queen.policy import JobFacts
from rbee.queen.quotas import Account, Charge, Demand, Used
from rbee.queen.request_metrics import MODEL_KEY
from rbee.queen.services import QueenServices
from rbee.queen.transport import Body
from rbee.scheduler.placement import PlaceMode
from rbee.web.body import parse_model
from rbee.web.streaming import unless_disconnected

router = APIRouter(prefix="/v1")


@router.get("/models")
async def list_models(svc: ServicesDep) -> ModelList:
    return ModelList(data=[ModelCard(id=e["id"], created=0, kind=e["kind"])
                           for e in model_entries(svc.registry)])


@router.get("/models/{model:path}")
async def get_model(model: str, svc: ServicesDep) -> ModelCard:
    ref = parse_ref(model)
    if not any(e["id"] == ref.name for e in model_entries(svc.registry)):
        raise ModelNotFound(f"model {model!r} not found", param="model")
    return ModelCard(id=ref.name, created=0, kind=ref.kind)


async def _complete(request: Request,
                    schema: type[ChatCompletionRequest] | type[CompletionRequest],
                    path: str) -> Response:
    svc: QueenServices = request.app.state.services
    raw = await request.body()
    body = parse_model(raw, schema, request.headers.get("content-type"))
    ref = require_kind(parse_ref(body.model), "chat")
    hints = hints_for(request, ref, body.model_extra or {})
    demand = text_demand(len(raw), body.token_limit(), body.n, svc.quotas.price_of(ref.name))
    asked = bool(body.stream_options and body.stream_options.include_usage)
    return await within_deadline(
        request, svc, lambda deadline: admitted(svc, body.stream, ref, hints, path, raw,
                                                 deadline, demand=demand, usage_asked=asked))


async def embeddings(request: Request) -> Response:
    svc: QueenServices = request.app.state.services
    raw = await request.body()
    body = parse_model(raw, EmbeddingRequest, request.headers.get("content-type"))
    limit = svc.settings.max_embedding_inputs
    if len(body.inputs()) > limit:
        raise InvalidRequest(f"input has {len(body.inputs())} items; this queen takes at most "
                             f"{limit} per request", param="input")
    ref = require_kind(parse_ref(body.model), "embedding")
    extra = dict(body.model_extra or {})
    if body.user is not None:
        extra.setdefault("user", body.user)
    hints = hints_for(request, ref, extra)
    demand = text_demand(len(raw), 0, 1, svc.quotas.price_of(ref.name))
    return await within_deadline(
        request, svc, lambda deadline: admitted(svc, False, ref, hints, "/v1/embeddings",
                                                 raw, deadline, demand=demand))


async def audio_speech(request: Request) -> Response:
    """Speech streams through as the worker makes it (sentence by sentence)."""
    svc: QueenServices = request.app.state.services
    raw = await request.body()
    body = parse_model(raw, SpeechRequest, request.headers.get("content-type"))
    ref = require_kind(parse_ref(body.model), "speech")
    hints = hints_for(request, ref, body.model_extra or {})
    media_type = MEDIA_TYPES[body.audio_format()]
    # Piper reports no length: speech is charged its worst case, the input read slowly.
    spoken = speech_use(body.input)
    demand = demand_for(spoken, svc.quotas.prices(ref.name))
    return await within_deadline(
        request, svc, lambda deadline: admitted(svc, True, ref, hints, "/v1/audio/speech",
                                                 raw, deadline, audio=media_type,
                                                 demand=demand, reported=spoken))


async def images_generations(request: Request) -> Response:
    svc: QueenServices = request.app.state.services
    raw = await request.body()
    body = parse_model(raw, ImageRequest, request.headers.get("content-type"))
    return await _images(request, svc, body, "/v1/images/generations", raw)


async def images_edits(request: Request) -> Response:
    """A multipart form, its pictures streamed to disk and on to the worker (queen.images)."""
    svc: QueenServices = request.app.state.services
    form = await images.receive_edit(request, svc)
    try:
        body = edit_request(form.fields)
        body.check_limits(svc.settings.images_max_n, svc.settings.images_max_side)
        return await _images(request, svc, body, "/v1/images/edits",
                             images.edit_body(body, form))
    finally:  # answered, refused, failed, hung up: the pictures are not needed any more
        form.remove()


async def _images(request: Request, svc: QueenServices, body: ImageRequest, path: str,
                  raw: Body) -> Response:
    body.check_limits(svc.settings.images_max_n, svc.settings.images_max_side)
    ref = require_kind(parse_ref(body.model), "image")
    principal = principal_of(request)
    hints = hints_for(request, ref, body.model_extra or {})
    if body.response_format == "url" and isinstance(raw, bytes):
        # The worker answers base64 (it stores nothing); the queen stores the pictures.
        raw = body.model_copy(update={"response_format": "b64_json"}).model_dump_json(
            exclude_unset=True).encode()
    # Pictures are charged by the count (pipelines report no usage): the worst case is the
    # real use.
    pictures = Used(images=body.n or 1)
    demand = demand_for(pictures, svc.quotas.prices(ref.name))
    response = await within_deadline(
        request, svc, lambda deadline: admitted(svc, body.stream, ref, hints, path, raw,
                                                deadline, demand=demand, reported=pictures))
    if body.response_format != "url":
        return response
    return await images.as_urls(svc.artifacts, response, body.image_format(),
                                images.base_url(request, svc.settings.public_url),
                                principal.tenant_id)


def hints_for(request: Request, ref: ModelRef, extra: Mapping[str, object]) -> Hints:
    """An inference request's hints, within its API key's scope (the model, the priority),
    for the key's tenant: every inference route goes through here."""
    principal = principal_of(request)
    request.scope[MODEL_KEY] = ref.name  # the model label of its metrics
    principal.check_model(ref.name)
    svc: QueenServices = request.app.state.services
    svc.gdpr.consents.require(principal)  # GDPR: before anything of theirs is processed
    hints = request_hints(extra, tenant=principal.tenant)
    principal.check_priority(hints.job.priority if hints.job else "interactive")
    hints = replace(hints, actor=principal.actor(client_ip(request)))
    if principal.tenant_id is None:  # the queen's own admin: nobody's quota
        return hints
    account = Account(principal.tenant_id, principal.key_id, principal.tenant)
    job = hints.job or JobFacts()
    # Scripts see the tenant's labels and its use so far (queen.policy)
    if svc.dispatcher.policy.deciding is not None:  # only a script reads them
        job = replace(job, labels=dict(principal.tenant_labels),
                      usage=svc.quotas.usage_of(account))
    return replace(hints, job=job, account=account)


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def request_hints(extra: Mapping[str, object], tenant: str | None = None) -> Hints:
    """Where and how urgently to run an inference request: rbee's own extra body fields
    (`priority`, `placement`, `hive_id`, `device`, `worker_id`, `user`). `tenant`: the
    caller's, from its key; without one (the queen's own admin), the body's `user`."""
    priority = _str(extra.get("priority")) or "interactive"
    mode = _str(extra.get("placement")) or "pin"
    if priority not in PRIORITIES:
        raise InvalidRequest(f"priority must be one of {sorted(PRIORITIES)}", param="priority")
    if mode not in ("pin", "prefer", "auto"):
        raise InvalidRequest("placement must be pin, prefer or auto", param="placement")
    return Hints(hive_id=_str(extra.get("hive_id")), device=_str(extra.get("device")),
                 worker_id=_str(extra.get("worker_id")), mode=cast(PlaceMode, mode),
                 job=JobFacts(tenant=tenant or _str(extra.get("user")), priority=priority))


async def within_deadline(request: Request, svc: QueenServices,
                          work: Callable[[ClientDeadline], Awaitable[Response]]) -> Response:
    """Run an inference request's `work` under the client's deadline, until it hangs up."""
    loop = asyncio.get_running_loop()
    deadline = client_deadline(request.headers, loop.time(), svc.settings.max_request_timeout)
    # The client's deadline bounds everything before the answer starts: queueing, placing
    # and loading a worker, the worker's first byte. A stream's tokens are the relay's.
    scope = asyncio.timeout_at(deadline.by(loop.time()))
    try:
        async with scope:
            # A client that hangs up while queued (or while a worker is placed) leaves the
            # queue at once: its place goes to the next, and nobody works for it.
            return await unless_disconnected(request, work(deadline))
    except TimeoutError:
        if not scope.expired():
            raise
        raise DeadlineExceeded("the request's deadline passed before it was answered") from None


async def admitted(svc: QueenServices, stream: bool | None, ref: ModelRef, hints: Hints,
                   path: str, raw: Body, deadline: ClientDeadline,
                   audio: str | None = None, media_type: str = "application/json",
                   demand: Demand | None = None, usage_asked: bool | None = None,
                   reported: Used | None = None) -> Response:
    """`audio`: the media type of an audio stream (not SSE) to pipe through; `media_type`:
    a whole answer's. Quotas: `demand` is the worst case booked before the request queues
    (queen.quotas), settled with the engine's `usage` when it ends; `usage_asked` whether a
    streaming client asked for the usage frame (None: a stream that is not a chat or text
    completion, passed through as it is); `reported`: what to settle when the engine
    reports no usage (speech). The audit entry of the request is recorded once, when it
    ends (a stream's when it closes)."""
    trail = Trail(svc.audit, path, ref.name, bool(stream or audio), svc.registry.region,
                  hints.actor or ANONYMOUS)
    charge = None
    try:
        if hints.account is not None:  # raises QuotaExceeded (429) having booked nothing
            charge = svc.quotas.reserve(hints.account, ref.name, demand or Demand())
        ticket = await svc.admission.enter(
            ref.name, hints.job.priority if hints.job else "interactive",
            tenant=hints.account.tenant_id if hints.account else None)
        sending = _Sending(svc, path, raw, deadline, ticket, charge, reported, trail,
                           _token_metrics(svc, ref.name) if stream and usage_asked is not None
                           else None)

        async def attempt(worker: WorkerInfo) -> Response:
            trail.served(worker)
            if audio is not None:
                return await sending.audio(worker, audio)
            if stream:
                return await sending.stream(worker, usage_asked)
            return await svc.relay.forward(worker, path, raw, stream=False,
                                           deadline=deadline, media_type=media_type)

        try:
            response = await with_failover(svc.dispatcher, svc.registry, ref, hints,
                                           Silent(), attempt)
        except BaseException:
            ticket.release()
            raise
    except BaseException as exc:
        if charge is not None:
            charge.refund()
        trail.failed(exc)
        raise
    if not stream:
        ticket.release()
        trail.end("ok" if response.status_code < 400 else "error",
                  status=response.status_code, body=bytes(response.body))
    return sending.answered(response, whole=not stream)


def _token_metrics(svc: QueenServices, model: str) -> Callable[[Used], None] | None:
    """Where a token stream's usage is counted: its client may not see the usage frame, so
    the request metrics (which read whole answers) cannot."""
    metrics = svc.metrics
    if metrics is None:
        return None
    return lambda used: metrics.used(model, used.prompt_tokens, used.completion_tokens)


@dataclass
class _Sending:
    """One admitted request's ways to a worker; each ends its ticket, its audit trail and
    settles its charge (when it has one) once the answer is over."""

    svc: QueenServices
    path: str
    raw: Body
    deadline: ClientDeadline
    ticket: Ticket
    charge: Charge | None
    reported: Used | None
    trail: Trail
    tokens: Callable[[Used], None] | None  # a token stream's usage, into the metrics

    def ended(self) -> None:
        self.ticket.release()
        self.trail.end("ok", status=200)

    def closed(self) -> None:
        self.ended()
        if self.charge is not None:
            self.charge.settle(self.reported)

    async def audio(self, worker: WorkerInfo, media_type: str) -> Response:
        return await forward_audio(self.svc.relay, worker, self.path, self.raw,
                                   media_type=media_type, on_close=self.closed,
                                   deadline=self.deadline)

    async def stream(self, worker: WorkerInfo, usage_asked: bool | None) -> Response:
        """A token stream (`usage_asked` not None) carries the engine's usage whenever
        something counts it (the charge, the token metrics), whether or not its client asked
        for that frame (dropped again if it did not). Otherwise it is passed through."""
        relay = self.svc.relay
        if self.charge is None and self.tokens is None:
            # the stream itself watches for a hang-up, and frees the slot
            return await relay.forward(worker, self.path, self.raw, stream=True,
                                       on_close=self.ended, deadline=self.deadline)
        sent = self.raw
        if usage_asked is False and isinstance(sent, bytes):
            sent = with_usage(sent)  # the engine's count
        pipe = metered_pipe(relay.sse_pipe, self.used,
                            forward_usage=usage_asked is not False, reported=self.reported)
        return await relay.stream_through(worker, self.path, sent, pipe,
                                          on_close=self.unmetered, deadline=self.deadline)

    def used(self, used: Used | None) -> None:
        """A stream's end, with what its engine counted (None: it never said)."""
        if self.charge is not None:
            self.charge.settle(used)
        if used is not None and self.tokens is not None:
            self.tokens(used)

    def unmetered(self) -> None:
        """A metered stream ended. Its pipe settled the charge, unless it never ran (the
        client hung up between the worker's headers and the first byte): then the worst
        case stays booked, but the request no longer counts as running (first wins)."""
        self.ended()
        if self.charge is not None:
            self.charge.settle(None)

    def answered(self, response: Response, whole: bool) -> Response:
        """A whole answer's charge settled; the x-ratelimit-* headers on any answer."""
        charge = self.charge
        if charge is None:
            return response
        if whole and response.status_code == 200:
            charge.settle(used_in(bytes(response.body)) or self.reported)
        elif whole:  # the worker refused it (bad input only it could see): nothing was used
            charge.refund()
        if charge.headers:
            response.headers.update(charge.headers)
        return response


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


# The two inference routes are plain Starlette endpoints (mounted by app.py with
# `hot_routes`): FastAPI's dependency resolution is measurable on a path whose whole
# budget is half a millisecond (bench/queen_overhead.py). They parse their bodies themselves.
async def chat_completions(request: Request) -> Response:
    return await _complete(request, ChatCompletionRequest, "/v1/chat/completions")


async def completions(request: Request) -> Response:
    return await _complete(request, CompletionRequest, "/v1/completions")


hot_routes = (("/v1/chat/completions", chat_completions), ("/v1/completions", completions),
              ("/v1/embeddings", embeddings), ("/v1/audio/speech", audio_speech),
              ("/v1/images/generations", images_generations),
              ("/v1/images/edits", images_edits))
