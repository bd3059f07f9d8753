"""Relaying a worker's audio stream to the client, bytes as they come.

The relay's stream is SSE: it counts `data:` frames as progress and ends a cut stream with an
error frame. Audio has neither, so its pipe is this module's, on the relay's own stream
(`Relay.stream_through`): the same first-byte deadline, failover before headers, liveness
cut-offs, the cut's grace and admission release. A stream cut after its headers (a deadline,
a worker that stopped) ends as a broken transfer, so the client never takes a short file for
a whole one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from starlette.responses import Response

from rbee.api.cluster import WorkerInfo
from rbee.core.errors import WorkerUnavailable
from rbee.queen.calls import Call, ClientDeadline, Watch
from rbee.queen.relay import Relay
from rbee.queen.transport import Body, Upstream


async def forward_audio(relay: Relay, worker: WorkerInfo, path: str, raw: Body, *,
                        media_type: str, on_close: Callable[[], None],
                        deadline: ClientDeadline) -> Response:
    """The worker's answer streamed through; `on_close` runs once it ends, however."""
    return await relay.stream_through(worker, path, raw, _pipe, media_type=media_type,
                                      on_close=on_close, deadline=deadline)


async def _pipe(worker: WorkerInfo, call: Call, upstream: Upstream, watch: Watch,
                finish: Callable[[], None]) -> AsyncIterator[bytes]:
    try:
        async for chunk in upstream.chunks():
            watch.progress()
            yield chunk
        if call.reason is not None:  # cut: the body ended, but not because it was whole
            raise WorkerUnavailable(f"worker {worker.id}'s audio stream was cut: "
                                    f"{call.reason}")
    finally:
        finish()
