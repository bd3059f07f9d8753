"""The `speak` job: admission → a speech worker (failover until it answers) → the audio
streamed from the worker straight into the artifact store (never whole in memory, never
base64 on the job's stream) → the result names the artifact (id, URL, size).

`rbee speak` does not use it: it streams /v1/audio/speech, whose first audio plays while the
rest is being made; a job's audio exists only once whole. The job is for callers that want
speech like every other result: queued, cancellable, its file kept under the retention rules.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from rbee.api.cluster import WorkerInfo
from rbee.api.jobs import SpeakOp
from rbee.api.speech import MEDIA_TYPES
from rbee.core.errors import WorkerUnavailable
from rbee.models.catalog import parse_ref, require_kind
from rbee.queen.dispatch import placement_hints
from rbee.queen.failover import with_failover
from rbee.queen.job_runner import JobRunner
from rbee.queen.jobs import JobContext
from rbee.queen.metering import speech_use
from rbee.storage.artifacts import Artifact, ArtifactTooLarge

# 4096 characters (OpenAI's bound) are some five minutes of speech: 30 MB as 48 kHz WAV.
MAX_SPEECH_BYTES = 64 * 1024 * 1024


class SpeakRunner(JobRunner):
    """The `speak` job operation."""

    async def run(self, ctx: JobContext, op: SpeakOp) -> dict[str, Any]:
        ref = require_kind(parse_ref(op.model), "speech")
        body = {**op.fields(), "model": ref.name}
        hints = placement_hints(op)
        fmt = op.audio_format()
        started = time.perf_counter()
        first: float | None = None

        async def attempt(worker: WorkerInfo) -> tuple[WorkerInfo, Artifact]:
            ctx.narrate("speak", f"{ref.name} on {worker.id} ({worker.hive_id} "
                        f"{worker.device})")

            async def audio() -> AsyncIterator[bytes]:
                nonlocal first
                async with contextlib.aclosing(self._relay.stream_bytes(
                        worker, "/v1/audio/speech", body)) as chunks:
                    async for chunk in chunks:
                        if first is None:
                            first = time.perf_counter()
                            ctx.narrate("speak", f"first audio after "
                                        f"{(first - started) * 1000:.0f} ms")
                        yield chunk

            try:
                artifact = await self._artifacts.put(
                    audio(), media_type=MEDIA_TYPES[fmt], owner=ctx.job_id,
                    filename=f"{ctx.job_id}.{fmt}", max_bytes=MAX_SPEECH_BYTES)
            except ArtifactTooLarge as exc:
                raise WorkerUnavailable(f"the speech is larger than this queen stores: "
                                        f"{exc}") from exc
            return worker, artifact

        async with self.slot(ctx, ref.name, op.priority, lambda: speech_use(op.input)):
            worker, artifact = await with_failover(self._dispatcher, self._registry, ref,
                                                   hints, ctx, attempt)
        end = time.perf_counter()
        ctx.progress("speaking", 1.0, bytes=artifact.bytes)
        return {"model": ref.name, "worker_id": worker.id, "artifact_id": artifact.id,
                "url": artifact.url, "bytes": artifact.bytes,
                "media_type": artifact.media_type, "response_format": fmt, "voice": op.voice,
                "timings": {"first_audio_ms": round(((first or end) - started) * 1000, 2),
                            "total_ms": round((end - started) * 1000, 2)}}
