"""The `transcribe` job: an uploaded file (POST /v1/files) → admission → a transcription
worker, sent a multipart form whose audio streams from the artifact store's disk (re-read for
each worker tried, never whole in memory) → the transcript as the job's result.

The file stays a file: the job names it (`file_id`), so a client uploads once and may
transcribe and translate it, and a job's request (kept in the job history) holds no audio.
"""

from __future__ import annotations

import json
import time
from typing import Any

from rbee.api.cluster import WorkerInfo
from rbee.api.jobs import TranscribeOp
from rbee.api.transcription import MAX_AUDIO_FIELD, to_form
from rbee.api.transcripts import client_answer, worker_format
from rbee.core.errors import from_envelope
from rbee.models.catalog import parse_ref, require_kind
from rbee.queen import forms
from rbee.queen.dispatch import placement_hints
from rbee.queen.failover import with_failover
from rbee.queen.job_runner import JobRunner
from rbee.queen.jobs import JobContext
from rbee.queen.metering import used_in
from rbee.storage.artifacts import ArtifactNotFound
from rbee.web.uploads import Upload

ROUTES = {"transcribe": "/v1/audio/transcriptions", "translate": "/v1/audio/translations"}


class TranscribeRunner(JobRunner):
    """The `transcribe` job operation."""

    async def run(self, ctx: JobContext, op: TranscribeOp) -> dict[str, Any]:
        ref = require_kind(parse_ref(op.model), "transcription")
        try:
            artifact, path = self._artifacts.open(op.file_id)
        except ArtifactNotFound:  # removed (deleted, retention) since the job was submitted
            raise ArtifactNotFound(f"no file {op.file_id[:80]!r}", param="file_id") from None
        fmt = op.transcript_format()
        asked = op.model_copy(update={"model": ref.name, "response_format": worker_format(fmt)})
        fields = [*to_form(asked, op.task),
                  (MAX_AUDIO_FIELD, f"{self._settings.max_audio_seconds:g}")]
        body = forms.form_body(fields, [("file", Upload(path, artifact.filename,
                                                        artifact.media_type, artifact.bytes))])
        hints = placement_hints(op)
        started = time.perf_counter()
        sent = started

        async def attempt(worker: WorkerInfo) -> tuple[WorkerInfo, bytes]:
            nonlocal sent
            ctx.narrate(op.task, f"{ref.name} on {worker.id} ({worker.hive_id} "
                        f"{worker.device}): {artifact.bytes} bytes of {artifact.filename}")
            sent = time.perf_counter()
            answer = await self._relay.forward(worker, ROUTES[op.task], body, stream=False)
            raw = bytes(answer.body)
            if answer.status_code != 200:
                try:
                    envelope = json.loads(raw)
                except ValueError:
                    envelope = None
                raise from_envelope(answer.status_code, envelope)
            return worker, raw

        raw = b""  # the worker's json answer: charged by the seconds its usage says
        async with self.slot(ctx, ref.name, op.priority, lambda: used_in(raw)):
            worker, raw = await with_failover(self._dispatcher, self._registry, ref, hints,
                                              ctx, attempt)
        end = time.perf_counter()
        answer = client_answer(raw, fmt)
        transcript: Any = (json.loads(answer) if fmt in ("json", "verbose_json")
                           else answer.decode())
        return {"model": ref.name, "worker_id": worker.id, "file_id": op.file_id,
                "task": op.task, "response_format": fmt, "transcript": transcript,
                "timings": {"queue_ms": round((sent - started) * 1000, 2),
                            "transcribe_ms": round((end - sent) * 1000, 2),
                            "total_ms": round((end - started) * 1000, 2)}}
