"""The queen→hive spawn call: a client span under the request's, its trace context in the
call's headers; background work (no request around it) begins no trace."""

from __future__ import annotations

import httpx
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from rbee.api.cluster import SpawnWorker
from rbee.core.errors import UpstreamError
from rbee.queen.credentials import Credentials
from rbee.queen.hive_client import HiveClient
from rbee.tracing.tracer import Tracing, start_tracing

INFO = {"id": "wrk-1", "hive_id": "h1", "model": "file:/home/ann/private/tiny.gguf",
        "model_path": "/m", "device": "cpu", "engine": "fake", "url": "http://w",
        "state": "starting"}


def _client(handler: httpx.MockTransport, tracing: Tracing | None) -> HiveClient:
    return HiveClient(httpx.AsyncClient(transport=handler), Credentials(), tracing)


async def test_spawn_under_a_request_carries_its_trace_to_the_hive() -> None:
    exporter = InMemorySpanExporter()
    tracing = start_tracing("queen-rbee", exporter=exporter)
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json=INFO)

    hives = _client(httpx.MockTransport(answer), tracing)
    with tracing.tracer.start_as_current_span("request") as request:
        await hives.spawn("h1", "http://h1", SpawnWorker(model=INFO["model"]))
    tracing.provider.force_flush()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    spawn = spans["POST /v1/workers"]
    assert spawn.kind is SpanKind.CLIENT
    assert spawn.parent is not None and spawn.parent.span_id == request.get_span_context().span_id
    ctx = spawn.context
    assert seen[0].headers["traceparent"] == \
        f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
    assert spawn.attributes is not None
    assert spawn.attributes["http.response.status_code"] == 202
    assert spawn.attributes["rbee.model"] == "file:tiny.gguf"  # never the path
    tracing.shutdown()


async def test_a_failed_spawn_is_an_error_span_with_the_error_type_only() -> None:
    exporter = InMemorySpanExporter()
    tracing = start_tracing("queen-rbee", exporter=exporter)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused to secret-host")

    hives = _client(httpx.MockTransport(refuse), tracing)
    with tracing.tracer.start_as_current_span("request"):
        try:
            await hives.spawn("h1", "http://h1", SpawnWorker(model="m"))
        except UpstreamError:
            pass
        else:
            raise AssertionError("the spawn should have failed")
    tracing.provider.force_flush()
    spawn = next(s for s in exporter.get_finished_spans() if s.name == "POST /v1/workers")
    assert spawn.status.status_code is StatusCode.ERROR
    assert spawn.attributes is not None and spawn.attributes["error.type"] == "UpstreamError"
    assert "secret-host" not in str(dict(spawn.attributes)) + str(spawn.status.description)
    tracing.shutdown()


async def test_background_spawns_begin_no_trace_and_send_no_header() -> None:
    """A watchdog's or a job's spawn has no request around it: no span, no traceparent."""
    exporter = InMemorySpanExporter()
    tracing = start_tracing("queen-rbee", exporter=exporter)
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json=INFO)

    for used in (tracing, None):
        await _client(httpx.MockTransport(answer), used).spawn("h1", "http://h1",
                                                                SpawnWorker(model="m"))
    tracing.provider.force_flush()
    assert exporter.get_finished_spans() == ()
    assert [r.headers.get("traceparent") for r in seen] == [None, None]
    tracing.shutdown()
