"""An inference request's audit entry: facts gathered as it runs, recorded once at its end.

One `Trail` per request, taken where the request is admitted (queen/routes/openai.py and
queen/responses/answer.py); a new inference endpoint is covered by taking one there too.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from rbee.api.cluster import WorkerInfo
from rbee.core.errors import RbeeError
from rbee.queen.actor import ANONYMOUS, Actor
from rbee.queen.audit import AuditLog, Inference, Outcome


class Trail:
    """One inference request's facts, gathered as it runs; recorded once, at its end."""

    def __init__(self, log: AuditLog, path: str, model: str, stream: bool,
                 region_of: Callable[[str], str | None], actor: Actor = ANONYMOUS) -> None:
        clock = log.clock
        self._log, self._clock, self._region_of = log, clock, region_of
        self._path, self._model, self._stream, self._actor = path, model, stream, actor
        self._started = clock.monotonic()
        self._worker: WorkerInfo | None = None
        self._ended = False

    def served(self, worker: WorkerInfo) -> None:
        """The worker now answering (the last one, after failovers)."""
        self._worker = worker

    def end(self, outcome: Outcome, *, status: int | None = None, code: str | None = None,
            body: bytes | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        w = self._worker
        self._log.inference(Inference(
            path=self._path, model=self._model, outcome=outcome, started=self._started,
            ended=self._clock.monotonic(), stream=self._stream, status=status, code=code,
            worker_id=w.id if w else None, hive_id=w.hive_id if w else None,
            region=self._region_of(w.hive_id) if w else None,
            usage=usage_of(body) if body else None), actor=self._actor)

    def failed(self, exc: BaseException) -> None:
        if isinstance(exc, RbeeError):
            self.end("error", status=exc.http_status, code=exc.code)
        else:  # the client hung up, or the queen is stopping
            self.end("cancelled")


def usage_of(body: bytes) -> dict[str, int] | None:
    """The `usage` object of an OpenAI JSON answer, without parsing the rest (an embeddings
    answer is megabytes of numbers; usage comes last)."""
    at = body.rfind(b'"usage"')
    start = body.find(b"{", at) if at >= 0 else -1
    if start < 0:
        return None
    try:
        found, _ = json.JSONDecoder().raw_decode(body[start:start + 4096].decode())
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(found, dict):
        return None
    return {k: v for k, v in found.items() if isinstance(v, int) and not isinstance(v, bool)}
