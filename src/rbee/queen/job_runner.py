"""What the job operations that run on workers share: their turn in the admission queue,
and the quota charge their submission booked (queen.routes.jobs), settled when they end.
`JobRunner` is the constructor of the operations that make binary results (video, speak,
transcribe)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from rbee.queen.admission import Admission
from rbee.queen.dispatch import Dispatcher
from rbee.queen.jobs import JobContext
from rbee.queen.quotas import Quotas, Used
from rbee.queen.registry import Registry
from rbee.queen.relay import Relay
from rbee.queen.settings import QueenSettings
from rbee.storage.artifacts import ArtifactStore


@contextlib.asynccontextmanager
async def job_slot(admission: Admission, quotas: Quotas | None, ctx: JobContext, model: str,
                   priority: str, used: Callable[[], Used | None]) -> AsyncIterator[None]:
    """The job's turn for `model` (queued fairly among tenants, its position narrated) held
    while the body runs. Its charge is settled with `used()` when the body ends well, and
    given back when the job fails or is cancelled (queued or running): what a failed
    request used is not billed, as on the OpenAI routes."""
    charge = quotas.take(ctx.job_id) if quotas is not None else None

    def position(at: int, length: int) -> None:
        ctx.narrate("queue", f"queued for {model}: position {at} of {length}")

    try:
        ticket = await admission.enter(model, priority, position,
                                       tenant=charge.account.tenant_id if charge else None)
        try:
            yield
        finally:
            ticket.release()
    except BaseException:
        if charge is not None:
            charge.refund()
        raise
    if charge is not None:
        try:
            spent = used()
        except Exception:  # an answer whose counts could not be read: the worst case stays
            spent = None
        charge.settle(spent)


class JobRunner:
    def __init__(self, registry: Registry, dispatcher: Dispatcher, relay: Relay,
                 admission: Admission, artifacts: ArtifactStore,
                 settings: QueenSettings, quotas: Quotas | None = None) -> None:
        self._registry = registry
        self._dispatcher = dispatcher
        self._relay = relay
        self._admission = admission
        self._artifacts = artifacts
        self._settings = settings
        self._quotas = quotas

    def slot(self, ctx: JobContext, model: str, priority: str,
             used: Callable[[], Used | None]) -> contextlib.AbstractAsyncContextManager[None]:
        return job_slot(self._admission, self._quotas, ctx, model, priority, used)
