"""Every queen→worker call ends: connect, first byte, idle, whole-answer and client deadlines,
and liveness aborts. In-process with a scripted transport; deadlines in milliseconds."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
from starlette.responses import StreamingResponse

from rbee.api.cluster import DEADLINE_HEADER, Device, HiveTelemetry, WorkerInfo
from rbee.core.clock import FakeClock
from rbee.core.errors import (
    DeadlineExceeded,
    InvalidRequest,
    WorkerNotReady,
    WorkerUnavailable,
    WorkerUnreachable,
)
from rbee.core.states import WorkerState
from rbee.queen import relay as relay_module
from rbee.queen.calls import UNRESPONSIVE, Call, ClientDeadline, client_deadline
from rbee.queen.credentials import Credentials
from rbee.queen.liveness import Liveness
from rbee.queen.registry import Registry
from rbee.queen.relay import Relay
from rbee.queen.transport import Deadlines
from tests.unit.queen.fake_transport import HANG, REFUSE, FakeTransport, FakeUpstream

CPU = Device(id="cpu", kind="cpu", name="cpu", memory_total=8 << 30, memory_free=8 << 30)
FAST = Deadlines(connect=0.05, first_byte=0.2, idle=0.1, response=0.2, probe=0.05)
FRAME = b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n'
DONE = b"data: [DONE]\n\n"


def _worker(wid: str) -> WorkerInfo:
    return WorkerInfo(id=wid, hive_id="h1", model="m", model_path="/m", device="cpu",
                      engine="fake", url=f"http://{wid}", state=WorkerState.READY)


def _setup(transport: FakeTransport, deadlines: Deadlines = FAST
           ) -> tuple[Registry, Relay, FakeClock]:
    clock = FakeClock()
    registry = Registry(clock, 2.0)
    registry.report(HiveTelemetry(hive_id="h1", url="http://h1", version="0", pid=1,
                                  devices=[CPU], workers=[_worker("w1"), _worker("w2")]))
    return registry, Relay(registry, Credentials(), transport, deadlines), clock


async def _body(response: object) -> list[bytes]:
    assert isinstance(response, StreamingResponse)
    iterator: AsyncIterator[bytes] = response.body_iterator  # type: ignore[assignment]
    return [chunk async for chunk in iterator]


def _errors(frames: list[bytes]) -> list[dict[str, object]]:
    found = []
    for frame in frames:
        for line in frame.split(b"\n"):
            if line.startswith(b"data: {") and b'"error"' in line:
                found.append(json.loads(line[6:])["error"])
    return found


def _clean(registry: Registry, relay: Relay) -> None:
    """No leaked in-flight count or tracked call."""
    assert registry.inflight("w1") == 0
    assert relay.calls.busy() == {}


# -- whole answers ---------------------------------------------------------------------


async def test_a_live_worker_past_the_response_deadline_is_not_run_again_elsewhere() -> None:
    """Liveness says it answers: it is generating, and another worker would only run the
    whole generation again. So the error is final (WorkerUnavailable), not failed over."""
    registry, relay, _ = _setup(FakeTransport({"http://w1": HANG}))
    started = time.monotonic()
    with pytest.raises(WorkerUnavailable, match="no answer within") as info:
        await relay.forward(_worker("w1"), "/v1/completions", b"{}", stream=False)
    assert time.monotonic() - started < 1.0
    assert not isinstance(info.value, WorkerUnreachable)
    _clean(registry, relay)


async def test_a_refused_connection_is_unreachable() -> None:
    registry, relay, _ = _setup(FakeTransport({"http://w1": REFUSE}))
    with pytest.raises(WorkerUnreachable, match="refused"):
        await relay.forward(_worker("w1"), "/v1/completions", b"{}", stream=False)
    _clean(registry, relay)


async def test_the_client_deadline_wins_and_travels_to_the_worker() -> None:
    transport = FakeTransport({"http://w1": HANG})
    registry, relay, _ = _setup(transport, Deadlines(response=30.0))
    now = asyncio.get_running_loop().time()
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        await relay.forward(_worker("w1"), "/v1/completions", b"{}", stream=False,
                            deadline=ClientDeadline(until=now + 0.1))
    assert time.monotonic() - started < 1.0
    sent = float(transport.sent[0][1][DEADLINE_HEADER])
    assert 0 < sent <= 0.1
    _clean(registry, relay)


async def test_an_abort_ends_a_waiting_call_at_once() -> None:
    registry, relay, _ = _setup(FakeTransport({"http://w1": HANG}), Deadlines(response=30.0))
    call = asyncio.ensure_future(relay.forward(_worker("w1"), "/v1/completions", b"{}",
                                               stream=False))
    await asyncio.sleep(0.01)
    assert relay.calls.abort_worker("w1", UNRESPONSIVE) == 1
    with pytest.raises(WorkerUnreachable, match=UNRESPONSIVE):
        await asyncio.wait_for(call, 1.0)
    _clean(registry, relay)


# -- streams ---------------------------------------------------------------------------


async def test_a_stream_whose_headers_never_come_fails_over() -> None:
    registry, relay, _ = _setup(FakeTransport({"http://w1": HANG}))
    with pytest.raises(WorkerUnreachable):
        await relay.forward(_worker("w1"), "/v1/chat/completions", b"{}", stream=True)
    _clean(registry, relay)


async def test_keep_alives_are_not_progress() -> None:
    upstream = FakeUpstream()
    registry, relay, _ = _setup(FakeTransport({"http://w1": upstream}))
    response = await relay.forward(_worker("w1"), "/v1/chat/completions", b"{}", stream=True)

    async def keep_alive() -> None:
        while not upstream.closed:
            upstream.send(b": keep-alive\n\n")
            await asyncio.sleep(0.02)

    feeder = asyncio.ensure_future(keep_alive())
    started = time.monotonic()
    frames = await asyncio.wait_for(_body(response), 2.0)
    feeder.cancel()
    assert time.monotonic() - started < 1.0  # first_byte is 0.2 s, whatever the comments
    assert _errors(frames)[0]["code"] == "worker_unavailable"
    assert frames[-1] == DONE
    assert upstream.closed
    _clean(registry, relay)


async def test_a_stream_that_stalls_ends_with_an_error_frame_and_done() -> None:
    upstream = FakeUpstream()
    registry, relay, _ = _setup(FakeTransport({"http://w1": upstream}))
    response = await relay.forward(_worker("w1"), "/v1/chat/completions", b"{}", stream=True)
    upstream.send(FRAME, FRAME)  # then nothing: a SIGSTOPped worker
    frames = await asyncio.wait_for(_body(response), 2.0)
    assert frames[:2] == [FRAME, FRAME]
    assert "stopped sending tokens" in str(_errors(frames)[0]["message"])
    assert frames[-1] == DONE
    _clean(registry, relay)


async def test_a_stream_with_steady_tokens_is_not_cut() -> None:
    upstream = FakeUpstream()
    registry, relay, _ = _setup(FakeTransport({"http://w1": upstream}))
    response = await relay.forward(_worker("w1"), "/v1/chat/completions", b"{}", stream=True)

    async def tokens() -> None:  # 0.5 s in all, 0.05 s apart: beyond every single deadline
        for _ in range(10):
            upstream.send(FRAME)
            await asyncio.sleep(0.05)
        upstream.send(DONE)
        upstream.end()

    feeder = asyncio.ensure_future(tokens())
    frames = await asyncio.wait_for(_body(response), 3.0)
    await feeder
    assert frames == [FRAME] * 10 + [DONE]
    _clean(registry, relay)


async def test_an_aborted_stream_ends_with_an_error_frame() -> None:
    upstream = FakeUpstream()
    registry, relay, _ = _setup(FakeTransport({"http://w1": upstream}),
                                Deadlines(first_byte=30.0, idle=30.0))
    response = await relay.forward(_worker("w1"), "/v1/chat/completions", b"{}", stream=True)
    upstream.send(FRAME)
    reader = asyncio.ensure_future(_body(response))
    await asyncio.sleep(0.02)
    relay.calls.abort_worker("w1", UNRESPONSIVE)
    frames = await asyncio.wait_for(reader, 1.0)
    assert UNRESPONSIVE in str(_errors(frames)[0]["message"])
    assert frames[-1] == DONE
    _clean(registry, relay)


async def test_the_client_deadline_ends_a_stream() -> None:
    upstream = FakeUpstream()
    registry, relay, _ = _setup(FakeTransport({"http://w1": upstream}),
                                Deadlines(first_byte=30.0, idle=30.0))
    now = asyncio.get_running_loop().time()
    response = await relay.forward(_worker("w1"), "/v1/chat/completions", b"{}", stream=True,
                                   deadline=ClientDeadline(until=now + 0.15))

    async def tokens() -> None:
        while not upstream.closed:
            upstream.send(FRAME)
            await asyncio.sleep(0.02)

    feeder = asyncio.ensure_future(tokens())
    frames = await asyncio.wait_for(_body(response), 2.0)
    feeder.cancel()
    assert _errors(frames)[0]["code"] == "deadline_exceeded"
    _clean(registry, relay)


async def test_job_streams_raise_unreachable_when_a_worker_stalls() -> None:
    upstream = FakeUpstream()
    registry, relay, _ = _setup(FakeTransport({"http://w1": upstream}))
    upstream.send(FRAME)
    got = []
    with pytest.raises(WorkerUnreachable):
        async for chunk in relay.stream_events(_worker("w1"), {"model": "m"}):
            got.append(chunk)
    assert len(got) == 1
    _clean(registry, relay)


# -- liveness --------------------------------------------------------------------------


async def _hung_call_on_w1() -> tuple[FakeTransport, Registry, Relay, FakeClock, Liveness,
                                      asyncio.Future[object]]:
    """w1 answers no probe and hangs a non-streamed call, which is under way."""
    transport = FakeTransport({"http://w1": HANG}, alive={"http://w1": False})
    registry, relay, clock = _setup(transport, Deadlines(response=30.0))
    liveness = Liveness(registry, relay.calls, transport, clock, interval=1.0, timeout=5.0)
    call: asyncio.Future[object] = asyncio.ensure_future(
        relay.forward(_worker("w1"), "/v1/completions", b"{}", stream=False))
    await asyncio.sleep(0.01)
    return transport, registry, relay, clock, liveness, call


async def test_liveness_takes_a_silent_busy_worker_out_and_back() -> None:
    transport, registry, _, clock, liveness, call = await _hung_call_on_w1()
    await liveness.tick()  # first failed probe: not yet
    assert not call.done()
    clock.advance(5.0)
    await liveness.tick()
    with pytest.raises(WorkerUnreachable):
        await asyncio.wait_for(call, 1.0)
    assert registry.unresponsive() == {"w1"}
    routable = {v.info.id for v in registry.snapshot(memory=False).workers}
    assert routable == {"w2"}
    assert registry.ready_count("m") == 1
    listed = {w.id: w.state for w in registry.listed_workers()}
    assert listed == {"w1": WorkerState.UNKNOWN, "w2": WorkerState.READY}
    # It answers again (SIGCONT): routed to again.
    transport.alive["http://w1"] = True
    await liveness.tick()
    assert registry.unresponsive() == frozenset()
    assert {v.info.id for v in registry.snapshot(memory=False).workers} == {"w1", "w2"}
    assert transport.probes == ["http://w1/health"] * 3


async def test_liveness_probes_only_busy_workers() -> None:
    transport = FakeTransport()
    registry, relay, clock = _setup(transport)
    liveness = Liveness(registry, relay.calls, transport, clock, interval=1.0, timeout=5.0)
    await liveness.tick()
    assert transport.probes == []


# -- the client's deadline headers -----------------------------------------------------


def test_client_deadline_headers() -> None:
    assert client_deadline({}, 100.0, 60.0) == ClientDeadline()
    d = client_deadline({"x-stainless-read-timeout": "600"}, 100.0, 3600.0)
    assert d == ClientDeadline(until=None, read=600.0)
    # The Node SDK's header bounds the wait for headers, never a whole stream.
    d = client_deadline({"x-stainless-timeout": "60"}, 100.0, 3600.0)
    assert d == ClientDeadline(until=None, read=60.0)
    d = client_deadline({"x-request-timeout": "7200", "x-stainless-read-timeout": "5"},
                        100.0, 3600.0)
    assert d == ClientDeadline(until=3700.0, read=5.0)  # capped
    assert d.by(100.0) == 105.0
    for bad in ("soon", "-1", "0", "nan", "inf"):
        with pytest.raises(InvalidRequest, match="x-request-timeout"):
            client_deadline({"x-request-timeout": bad}, 100.0, 60.0)


# -- races and the review's cases ------------------------------------------------------


async def test_an_abort_as_the_deadline_fires_is_harmless() -> None:
    """The deadline's callback and liveness's abort in one loop pass: no RuntimeError."""
    loop = asyncio.get_running_loop()
    call = Call("w1", "http://w1")
    errors: list[BaseException] = []

    def abort() -> None:
        try:
            call.abort(UNRESPONSIVE)
        except BaseException as exc:
            errors.append(exc)

    with pytest.raises(TimeoutError):
        async with call.waiting(loop.time() + 0.02):
            loop.call_at(loop.time() + 0.0201, abort)  # runs right after the deadline's
            await asyncio.sleep(1)
    assert errors == []


async def test_liveness_still_ends_calls_of_a_worker_the_registry_dropped() -> None:
    """A failed-over request drops its worker from the registry; its other hung calls must
    still be ended (partition: a new connect fails before liveness decides)."""
    _, registry, relay, clock, liveness, call = await _hung_call_on_w1()
    registry.drop_worker("h1", "w1")
    await liveness.tick()
    clock.advance(5.0)
    await liveness.tick()
    with pytest.raises(WorkerUnreachable, match=UNRESPONSIVE):
        await asyncio.wait_for(call, 1.0)
    assert relay.calls.busy() == {}


async def test_a_cut_stream_whose_client_stopped_reading_still_ends(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that keeps its connection but reads nothing blocks the response's send; a
    cut must still end the response, and give back the worker and the slot."""
    monkeypatch.setattr(relay_module, "CUT_GRACE", 0.05)
    upstream = FakeUpstream()
    registry, relay, _ = _setup(FakeTransport({"http://w1": upstream}),
                                Deadlines(first_byte=30.0, idle=30.0))
    closed: list[bool] = []
    response = await relay.forward(_worker("w1"), "/v1/chat/completions", b"{}", stream=True,
                                   on_close=lambda: closed.append(True))
    upstream.send(FRAME)
    sent: list[dict[str, object]] = []
    stuck = asyncio.Event()

    async def send(message: dict[str, object]) -> None:
        sent.append(message)
        if message.get("body") == FRAME:
            stuck.set()
            await asyncio.Event().wait()  # the client's window is shut: this send never ends

    async def receive() -> dict[str, object]:
        await asyncio.Event().wait()  # and it never hangs up either
        return {}

    serving = asyncio.ensure_future(response({"type": "http"}, receive, send))
    await asyncio.wait_for(stuck.wait(), 1.0)
    relay.calls.abort_worker("w1", UNRESPONSIVE)
    await asyncio.wait_for(serving, 2.0)
    assert closed == [True]
    _clean(registry, relay)


@pytest.mark.parametrize("stream", [True, False])
async def test_a_worker_that_says_not_ready_is_failed_over(stream: bool) -> None:
    refusal = (503, json.dumps({"error": {"message": "worker is loading", "type": "x",
                                          "param": None, "code": "worker_unavailable"}}).encode())
    transport = FakeTransport({"http://w1": refusal, "http://w2": (200, b'{"ok":true}')})
    registry, relay, _ = _setup(transport)
    with pytest.raises(WorkerNotReady, match="loading"):
        await relay.forward(_worker("w1"), "/v1/completions", b"{}", stream=stream)
    _clean(registry, relay)
