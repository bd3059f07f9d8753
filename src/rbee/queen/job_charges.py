"""Jobs that run on workers are charged like the requests they stand for.

At submission a job books its worst case on its tenant's quotas (a 429 before the job
exists), held under the job's id; the job settles it with what it used when it ends, or gives
it back when it fails or is cancelled (queen.job_runner). Units per operation:
- `infer`, `embed`: tokens, as the chat and embeddings routes (the engines' counts);
- `image`: the pictures asked for (settled: the pictures made);
- `speak`: speech's estimate from its text (queen.metering);
- `transcribe`: the seconds the stored file can hold (settled: the worker's count);
- `video` (and POST /v1/videos, which is this job): the seconds asked for.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from rbee.api.jobs import EmbedOp, ImageOp, InferOp, SpeakOp, TranscribeOp, VideoOp
from rbee.models.catalog import DEFAULT_EMBEDDING_MODEL, parse_ref
from rbee.queen.actor import Actor
from rbee.queen.identity import Principal
from rbee.queen.metering import (
    audio_worst_case,
    demand_for,
    speech_use,
    text_demand,
    video_use,
)
from rbee.queen.quotas import Account, Charge, Demand, Used
from rbee.queen.services import QueenServices
from rbee.queen.videos import plan

# The model an inference operation runs when its body names none (others: the queen's default).
DEFAULT_MODELS = {"embed": DEFAULT_EMBEDDING_MODEL}


def submit_charged(svc: QueenServices, principal: Principal, name: str, op: BaseModel,
                   request: dict[str, Any], size: int, actor: Actor) -> str:
    """Submit job `name` for `principal`, its worst case booked first (QuotaExceeded: no job
    exists); `size`: the request body's bytes (a text job's prompt estimate)."""
    charge = _charge(svc, principal, name, op, size)
    try:
        job_id = svc.jobs.submit(name, op, request, principal.tenant_id, actor)
    except BaseException:
        if charge is not None:
            charge.refund()
        raise
    if charge is not None:
        svc.quotas.hold(job_id, charge)  # the job settles it (queen.job_runner)
        # ...or, cancelled before it ever ran, gives it back
        svc.jobs.on_done(job_id, lambda: _refund_unclaimed(svc, job_id))
    return job_id


def _refund_unclaimed(svc: QueenServices, job_id: str) -> None:
    charge = svc.quotas.take(job_id)
    if charge is not None:
        charge.refund()


def _charge(svc: QueenServices, principal: Principal, name: str, op: BaseModel,
            size: int) -> Charge | None:
    if principal.tenant_id is None:  # the queen's own admin: nobody's quota
        return None
    booked = demand(svc, name, op, size)
    if booked is None:  # not work on a worker (hives, scripts, listings)
        return None
    model, worst = booked
    account = Account(principal.tenant_id, principal.key_id, principal.tenant)
    return svc.quotas.reserve(account, model, worst)


def demand(svc: QueenServices, name: str, op: BaseModel, size: int
           ) -> tuple[str, Demand] | None:
    """The model a job runs and its worst case, or None for jobs that are not charged."""
    quotas = svc.quotas
    if isinstance(op, InferOp | EmbedOp):
        model = parse_ref(op.model or DEFAULT_MODELS.get(name, svc.settings.default_model)).name
        output = (op.max_tokens, op.n) if isinstance(op, InferOp) else (0, 1)
        return model, text_demand(size, *output, quotas.price_of(model))
    use: Used
    if isinstance(op, ImageOp):
        model, use = parse_ref(op.model).name, Used(images=op.n)
    elif isinstance(op, SpeakOp):
        model, use = parse_ref(op.model).name, speech_use(op.input)
    elif isinstance(op, TranscribeOp):
        artifact, _ = svc.artifacts.open(op.file_id)  # the route checked that it exists
        model = parse_ref(op.model).name
        use = audio_worst_case(artifact.bytes, svc.settings.max_audio_seconds)
    elif isinstance(op, VideoOp):
        model, use = plan(op, svc.settings).ref.name, video_use(op.seconds)
    else:
        return None
    return model, demand_for(use, quotas.prices(model))
