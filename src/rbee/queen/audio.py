"""Relaying a worker's audio stream to the client, bytes as they come.

The relay's stream is SSE: it counts `data:` frames as progress and ends a cut stream with an
error frame. Audio has neither, so it is piped here, on the relay's own call bookkeeping
(`Relay.open_stream`, `Relay.end_stream`): the same first-byte deadline, failover before
headers, liveness cut-offs and admission release. A stream cut after its headers (a deadline,
a worker that stopped) ends as a broken transfer, so the client never takes a short file for a
whole one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from starlette.responses import Response

from rbee.api.cluster import WorkerInfo
from rbee.core.errors import WorkerUnavailable
from rbee.queen.calls import Call, ClientDeadline, Watch
from rbee.queen.relay import CUT_GRACE, Relay
from rbee.queen.transport import Upstream
from rbee.web.streaming import DisconnectAwareStream


async def forward_audio(relay: Relay, worker: WorkerInfo, path: str, raw: bytes, *,
                        media_type: str, on_close: Callable[[], None],
                        deadline: ClientDeadline) -> Response:
    """The worker's answer streamed through; `on_close` runs once it ends, however."""
    call, upstream, watch = await relay.open_stream(worker, path, raw, deadline)
    ended = False

    def finish() -> None:
        nonlocal ended
        if not ended:
            ended = True
            relay.end_stream(call, upstream, watch, on_close)

    response = DisconnectAwareStream(_pipe(worker, call, upstream, watch, finish),
                                     media_type=media_type, on_close=finish)
    loop = asyncio.get_running_loop()

    def cut() -> None:
        upstream.close()
        loop.call_later(CUT_GRACE, response.abort)

    call.streaming(cut)
    return response


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
