"""Answer a Responses request through the chat path: admission, dispatch, failover, relay.

The worker gets an ordinary chat-completions request, so whatever it supports (tools,
structured output, sampling fields) a Response gets too. A stored response is written before
its client learns it is complete (the final event, or the JSON answer), so a client that saw
it can always continue from it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.responses import JSONResponse, Response

from rbee.api.cluster import WorkerInfo
from rbee.api.responses import ResponseObject, ResponsesRequest
from rbee.core.errors import InvalidRequest, NotFound, RbeeError, UpstreamError, from_envelope
from rbee.models.catalog import parse_ref, require_kind
from rbee.queen.actor import ANONYMOUS
from rbee.queen.admission import Ticket
from rbee.queen.audit_trail import Trail
from rbee.queen.calls import ClientDeadline
from rbee.queen.dispatch import Hints, Silent
from rbee.queen.failover import with_failover
from rbee.queen.metering import text_demand, used_in
from rbee.queen.quotas import Charge, Used
from rbee.queen.relay import CUT_GRACE
from rbee.queen.responses.events import EventStream
from rbee.queen.responses.inputs import Item, Plan, plan
from rbee.queen.responses.outputs import (
    answer_output,
    as_input,
    finished,
    new_id,
    parse_answer,
    skeleton,
    usage,
)
from rbee.queen.services import QueenServices
from rbee.web.streaming import DisconnectAwareStream

CHAT_PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class Owner:
    """Whose responses these are: stored under `tenant_id`, and `may_read` says which
    stored ones the caller may continue from."""

    tenant_id: str | None
    may_read: Callable[[str | None], bool]
    user_id: str | None = None  # the person, for a GDPR export or erasure
Chunks = AsyncGenerator[dict[str, Any], None]
T = TypeVar("T")


async def respond(svc: QueenServices, req: ResponsesRequest, hints: Hints,
                  deadline: ClientDeadline, owner: Owner) -> Response:
    """`owner`: the caller's tenant and what it may read (another tenant's stored response
    is one that does not exist)."""
    if req.background:
        raise InvalidRequest("background responses are not supported", param="background")
    history = await _history(svc, req.previous_response_id, owner)
    work = plan(req, history, svc.settings.max_body_bytes)
    start = skeleton(req, new_id("resp"), int(time.time()))
    if req.stream:
        return await _streamed(svc, req, hints, work, start, deadline, owner)
    return await _whole(svc, req, hints, work, start, deadline, owner)


async def _history(svc: QueenServices, previous: str | None, owner: Owner) -> list[Item]:
    if previous is None:
        return []
    found = await asyncio.to_thread(svc.responses.get, previous)
    if found is None or not owner.may_read(found.tenant_id):
        raise NotFound(f"no stored response {previous!r} (deleted, or made with store=false)",
                       param="previous_response_id")
    output = ResponseObject.model_validate(found.response).output
    return [*found.conversation, *as_input(output)]


async def _whole(svc: QueenServices, req: ResponsesRequest, hints: Hints, work: Plan,
                 start: ResponseObject, deadline: ClientDeadline, owner: Owner) -> Response:
    raw = json.dumps(work.chat).encode()

    async def attempt(worker: WorkerInfo) -> Response:
        return await svc.relay.forward(worker, CHAT_PATH, raw, stream=False, deadline=deadline)

    reply, _, charge, trail = await _admitted(svc, req, hints, attempt, len(raw))
    trail.end("ok" if reply.status_code == 200 else "error", status=reply.status_code,
              body=bytes(reply.body))
    if reply.status_code != 200:  # the worker refused (a bad field, a context too long)
        if charge is not None:
            charge.refund()
        raise from_envelope(reply.status_code, _json(bytes(reply.body)))
    if charge is not None:
        charge.settle(used_in(bytes(reply.body)))
    answer = parse_answer(bytes(reply.body))
    output, finish = answer_output(answer)
    done = finished(start, output, finish, usage(answer.usage), int(time.time()))
    await _store(svc, req, done, work, owner)
    return JSONResponse(done.model_dump(mode="json"),
                        headers=charge.headers if charge is not None else None)


async def _admitted(svc: QueenServices, req: ResponsesRequest, hints: Hints,
                    attempt: Callable[[WorkerInfo], Awaitable[T]], size: int, *,
                    keep: bool = False) -> tuple[T, Ticket, Charge | None, Trail]:
    """The attempt's result on some worker; the admission ticket: released here unless
    `keep` (a stream releases it when it ends) or the attempt failed everywhere; the quota
    charge of the key's tenant (queen.quotas) for the caller to settle (`size`: the chat
    request's bytes, its prompt's estimate); and the request's audit trail, which the
    caller ends (here only when the attempt failed everywhere)."""
    ref = require_kind(parse_ref(req.model), "chat")
    trail = Trail(svc.audit, "/v1/responses", ref.name, keep, svc.registry.region,
                  hints.actor or ANONYMOUS)
    charge = None

    async def served(worker: WorkerInfo) -> T:
        trail.served(worker)
        return await attempt(worker)

    try:
        if hints.account is not None:  # 429 before anything else
            demand = text_demand(size, req.max_output_tokens, 1,
                                 svc.quotas.price_of(ref.name))
            charge = svc.quotas.reserve(hints.account, ref.name, demand)
        ticket = await svc.admission.enter(
            ref.name, hints.job.priority if hints.job else "interactive",
            tenant=hints.account.tenant_id if hints.account else None)
        try:
            result = await with_failover(svc.dispatcher, svc.registry, ref, hints, Silent(),
                                         served)
        except BaseException:
            ticket.release()
            raise
    except BaseException as exc:
        if charge is not None:
            charge.refund()
        trail.failed(exc)
        raise
    if not keep:
        ticket.release()
    return result, ticket, charge, trail


async def _streamed(svc: QueenServices, req: ResponsesRequest, hints: Hints, work: Plan,
                    start: ResponseObject, deadline: ClientDeadline, owner: Owner
                    ) -> Response:
    async def attempt(worker: WorkerInfo
                      ) -> tuple[Chunks, dict[str, Any] | None, _Ending]:
        # The first chunk comes at once (the role): waiting for it opens the stream here,
        # where a worker that cannot be reached is still failed over. Each attempt has its
        # own ending: a cut of one that failed over must not end the next one's response.
        ending = _Ending()
        chunks = svc.relay.stream_events(worker, work.chat, deadline, on_cut=ending.soon)
        try:
            return chunks, await anext(chunks), ending
        except StopAsyncIteration:
            return chunks, None, ending
        except BaseException:
            await chunks.aclose()
            raise

    (chunks, first, ending), ticket, charge, trail = await _admitted(
        svc, req, hints, attempt, len(json.dumps(work.chat)), keep=True)
    events = EventStream(start)
    frames = _frames(svc, req, work, events, chunks, first, owner)

    def closed() -> None:
        ticket.release()
        trail.end("ok", status=200)
        if charge is not None:  # the worker's usage chunk, as the final event carries it
            used = events.used
            charge.settle(None if used is None else Used(used.input_tokens,
                                                         used.output_tokens))

    ending.response = DisconnectAwareStream(_Owned(frames, chunks), on_close=closed)
    if charge is not None:
        ending.response.headers.update(charge.headers)
    return ending.response


class _Ending:
    """A cut stream ends with its `response.failed` event; a client that stopped reading
    (its connection open, its window shut) would block that send and keep the worker and
    the admission slot forever, so the response itself ends `CUT_GRACE` later if it has not
    (as `Relay.forward` does for chat streams)."""

    def __init__(self) -> None:
        self.response: DisconnectAwareStream | None = None

    def soon(self) -> None:
        asyncio.get_running_loop().call_later(CUT_GRACE, self._abort)

    def _abort(self) -> None:
        if self.response is not None:
            self.response.abort()


async def _frames(svc: QueenServices, req: ResponsesRequest, work: Plan, events: EventStream,
                  chunks: Chunks, first: dict[str, Any] | None, owner: Owner
                  ) -> AsyncGenerator[bytes, None]:
    for frame in events.start():
        yield frame
    try:
        if first is not None:
            for frame in events.feed(parse_answer(first)):
                yield frame
        async for chunk in chunks:
            for frame in events.feed(parse_answer(chunk)):
                yield frame
    except (RbeeError, ValueError) as exc:
        err = exc if isinstance(exc, RbeeError) else UpstreamError("the worker's stream "
                                                                    "could not be read")
        failed, frame = events.fail(err)
        await _store(svc, req, failed, work, owner)
        yield frame
        return
    done, last = events.finish(int(time.time()))
    await _store(svc, req, done, work, owner)
    for frame in last:
        yield frame


async def _store(svc: QueenServices, req: ResponsesRequest, response: ResponseObject,
                 work: Plan, owner: Owner) -> None:
    # (not for a person erased while it ran: queen.erased)
    if req.store is not False and not svc.gdpr.erased.user(owner.user_id):
        await asyncio.to_thread(svc.responses.save, response.id, response.created_at,
                                response.model_dump(mode="json"), work.conversation,
                                owner.tenant_id, owner.user_id)


class _Owned:
    """The event frames, owning the worker's stream: a response that ends before its body
    ever started (a client gone at once) still closes it, which a generator's own
    `finally` would not."""

    def __init__(self, frames: AsyncGenerator[bytes, None], chunks: Chunks) -> None:
        self._frames = frames
        self._chunks = chunks

    def __aiter__(self) -> _Owned:
        return self

    async def __anext__(self) -> bytes:
        return await self._frames.__anext__()

    async def aclose(self) -> None:
        try:
            await self._frames.aclose()
        finally:
            await self._chunks.aclose()


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
