"""A stream's resources are released once, also when its body never started."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from rbee.queen.relay import _once
from rbee.web.streaming import DisconnectAwareStream


async def test_on_close_runs_when_the_client_left_before_the_body_started() -> None:
    started = []
    closed = []

    async def body() -> AsyncIterator[bytes]:
        started.append(True)
        yield b"data: x\n\n"

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        raise OSError("client gone")  # the very first send (the headers) fails

    stream = DisconnectAwareStream(body(), on_close=lambda: closed.append(True))
    await stream({"type": "http", "asgi": {"spec_version": "2.4"}}, receive, send)
    assert started == [] and closed == [True]  # the generator's finally never ran; this did


async def test_on_close_runs_after_a_normal_end_and_once_only() -> None:
    sent: list[dict[str, Any]] = []
    released = []
    finish = _once(lambda: released.append(True))

    async def body() -> AsyncIterator[bytes]:
        try:
            yield b"data: x\n\n"
        finally:
            finish()

    async def receive() -> dict[str, Any]:
        import asyncio

        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await DisconnectAwareStream(body(), on_close=finish)(
        {"type": "http", "asgi": {"spec_version": "2.4"}}, receive, send)
    assert released == [True]  # body's finally and the response's: one release
    assert sent[0]["type"] == "http.response.start" and sent[-1]["more_body"] is False


async def test_a_stream_made_as_its_request_was_cancelled_is_released() -> None:
    """The work made its stream in the same step as a deadline cancelled the request: that
    response is never sent, and its on_close (the worker's slot, the admission ticket, the
    quota booking) must still run."""
    import asyncio

    from starlette.requests import Request

    from rbee.web.streaming import unless_disconnected

    released: list[bool] = []

    async def body() -> AsyncIterator[bytes]:
        yield b"data: x\n\n"

    async def work() -> DisconnectAwareStream:
        return DisconnectAwareStream(body(), on_close=lambda: released.append(True))

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    request = Request({"type": "http", "method": "POST", "path": "/", "headers": []}, receive)
    outer = asyncio.ensure_future(unless_disconnected(request, work()))
    await asyncio.sleep(0)  # `outer` now waits; `work`'s task is scheduled
    outer.cancel()  # the deadline, in the same step as the work finishes
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert released == [True]
