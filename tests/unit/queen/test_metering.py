"""What the queen charges when an engine reports no tokens: transcriptions by their seconds
(whatever format the client asked for), speech by an estimate, videos by their seconds."""

from __future__ import annotations

import json

import pytest

from rbee.api.quotas import Prices
from rbee.api.transcripts import Cue, client_answer, timed_text, worker_format
from rbee.queen.metering import (
    MIN_AUDIO_BYTES_PER_SECOND,
    _UsageReader,
    audio_worst_case,
    demand_for,
    speech_use,
    used_in,
    video_use,
)
from rbee.queen.quotas import Used

VERBOSE = json.dumps({
    "task": "transcribe", "language": "english", "duration": 2.5, "text": "One. Two.",
    "segments": [{"id": 0, "start": 0.0, "end": 1.25, "text": " One."},
                 {"id": 1, "start": 1.25, "end": 2.5, "text": " Two."}],
    "usage": {"type": "duration", "seconds": 3}}).encode()


@pytest.mark.parametrize(("fmt", "asked"), [("text", "json"), ("srt", "verbose_json"),
                                            ("vtt", "verbose_json"), ("json", "json"),
                                            ("verbose_json", "verbose_json")])
def test_the_worker_is_asked_for_a_format_that_carries_the_seconds(fmt: str,
                                                                  asked: str) -> None:
    assert worker_format(fmt) == asked  # type: ignore[arg-type]


def test_the_clients_format_is_written_from_the_workers_answer() -> None:
    cues = [Cue(0.0, 1.25, " One."), Cue(1.25, 2.5, " Two.")]
    assert client_answer(VERBOSE, "srt").decode() == timed_text("srt", cues)
    assert client_answer(VERBOSE, "srt").decode().startswith(
        "1\n00:00:00,000 --> 00:00:01,250\nOne.\n\n2\n00:00:01,250 --> 00:00:02,500\nTwo.")
    assert client_answer(VERBOSE, "vtt").decode().startswith("WEBVTT\n\n00:00:00.000 --> ")
    assert client_answer(b'{"text": " One. Two. ", "usage": {"seconds": 3}}', "text") \
        == b"One. Two.\n"
    assert client_answer(VERBOSE, "verbose_json") == VERBOSE  # untouched
    assert used_in(VERBOSE) == Used(audio_seconds=3.0)


def test_a_streamed_transcripts_last_event_settles_it_and_still_reaches_the_client() -> None:
    reader = _UsageReader(forward_usage=False)
    delta = b'data: {"type":"transcript.text.delta","delta":"One."}\n\n'
    done = (b'data: {"type":"transcript.text.done","text":"One.","logprobs":null,'
            b'"usage":{"type":"duration","seconds":4}}\n\n')
    out = reader.feed(delta + done[:20]) + reader.feed(done[20:] + b"data: [DONE]\n\n")
    assert out == delta + done + b"data: [DONE]\n\n"
    assert reader.used == Used(audio_seconds=4.0)


def test_worst_cases_and_their_cost() -> None:
    prices = Prices(audio_seconds=2.0, video_seconds=10.0)
    assert audio_worst_case(50_000, 1800.0) == Used(audio_seconds=50_000
                                                    / MIN_AUDIO_BYTES_PER_SECOND)
    assert audio_worst_case(10**9, 1800.0).audio_seconds == 1800.0  # the queen's own bound
    assert demand_for(audio_worst_case(1000, 60.0), prices).cost == 4.0
    assert speech_use("x" * 25) == Used(audio_seconds=2.5)
    assert demand_for(video_use("4"), prices).cost == 40.0
    assert demand_for(video_use(4), None).cost == 0.0  # a model without prices costs nothing


def test_a_metered_stream_that_never_ran_still_ends_its_request_on_the_meter() -> None:
    """The client hung up between the worker's headers and the first byte: the pipe (which
    settles) never ran, only the stream's on_close did. The request must stop counting as
    running (a concurrency limit would lock the tenant out), its worst case stays booked."""
    from types import SimpleNamespace

    from rbee.api.quotas import Limits
    from rbee.core.clock import FakeClock
    from rbee.queen.quotas import Account, Demand, Quotas
    from rbee.queen.routes.openai import _Sending

    recorded: list[object] = []
    quotas = Quotas(FakeClock(), lambda *row: recorded.append(row))
    quotas.set_limits("tenant", "t1", Limits(concurrent_requests=1))
    charge = quotas.reserve(Account("t1", "k1"), "m", Demand(tokens=10))
    released: list[str] = []
    sending = _Sending(svc=None, path="/v1/chat/completions", raw=b"{}",  # type: ignore[arg-type]
                       deadline=None, ticket=SimpleNamespace(  # type: ignore[arg-type]
                           release=lambda: released.append("ticket")),
                       charge=charge, reported=None,
                       trail=SimpleNamespace(end=lambda *a, **k: released.append("trail")),  # type: ignore[arg-type]
                       tokens=None)
    sending.unmetered()
    assert released == ["ticket", "trail"]
    assert quotas.in_flight("tenant", "t1") == 0
    assert quotas.usage_of(Account("t1", "k1"))["tokens_minute"] == 10  # still booked
    sending.unmetered()  # a second close changes nothing
    assert len(recorded) == 1


@pytest.mark.parametrize(("metrics", "charged", "piped"), [
    (False, False, False),  # nothing counts it: passed through, the client's body as sent
    (True, False, True),  # the token metrics read its usage
    (False, True, True),  # so does a tenant's charge
])
async def test_a_token_stream_is_read_only_when_something_counts_it(
        metrics: bool, charged: bool, piped: bool) -> None:
    from types import SimpleNamespace

    from rbee.queen.routes.openai import _Sending, _token_metrics

    calls: list[tuple[str, bytes]] = []

    async def forward(worker: object, path: str, raw: bytes, **kw: object) -> str:
        calls.append(("forward", raw))
        return "response"

    async def stream_through(worker: object, path: str, raw: bytes, pipe: object,
                             **kw: object) -> str:
        calls.append(("pipe", raw))
        return "response"

    relay = SimpleNamespace(forward=forward, stream_through=stream_through, sse_pipe=None)
    svc = SimpleNamespace(relay=relay, metrics=SimpleNamespace(used=lambda *a: None)
                          if metrics else None)
    raw = b'{"model":"m","stream":true}'
    sending = _Sending(svc=svc, path="/v1/chat/completions", raw=raw,  # type: ignore[arg-type]
                       deadline=None, ticket=None, charge=object() if charged else None,  # type: ignore[arg-type]
                       reported=None, trail=None,  # type: ignore[arg-type]
                       tokens=_token_metrics(svc, "m"))  # type: ignore[arg-type]
    await sending.stream(None, usage_asked=False)  # type: ignore[arg-type]
    ((how, sent),) = calls
    assert how == ("pipe" if piped else "forward")
    assert (b"include_usage" in sent) is piped  # only asked of the worker when read
