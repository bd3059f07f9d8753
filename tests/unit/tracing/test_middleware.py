"""The server span at the ASGI boundary: which requests get one, hostile trace headers, and
the relay's client span (its traceparent, its failures) with a scripted transport."""

from __future__ import annotations

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from rbee.core.errors import WorkerUnreachable
from rbee.queen.credentials import Credentials
from rbee.queen.relay import Relay
from rbee.tracing.middleware import TracedRequests
from rbee.tracing.tracer import Tracing, start_tracing
from tests.unit.queen.fake_transport import REFUSE, FakeTransport
from tests.unit.queen.test_deadlines import FAST, _clean, _setup, _worker

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _app(tracing: Tracing, joined_only: bool) -> Starlette:
    async def ok(_: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def boom(_: Request) -> PlainTextResponse:
        return PlainTextResponse("no", status_code=503)

    app = Starlette(routes=[Route("/v1/x", ok, methods=["GET", "POST"]),
                            Route("/v1/fail", boom, methods=["POST"]),
                            Route("/health", ok)])
    app.add_middleware(TracedRequests, tracing=tracing, routes=frozenset({"/v1/x", "/v1/fail"}),
                       joined_only=joined_only)
    return app


async def _send(tracing: Tracing, joined_only: bool, method: str, path: str,
                headers: dict[str, str] | None = None) -> None:
    transport = httpx.ASGITransport(app=_app(tracing, joined_only))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        await client.request(method, path, headers=headers)


@pytest.fixture
def traced() -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    return start_tracing("rbee-worker", exporter=exporter), exporter


async def test_only_the_named_post_routes_are_traced(
        traced: tuple[Tracing, InMemorySpanExporter]) -> None:
    tracing, exporter = traced
    for method, path in (("GET", "/v1/x"), ("GET", "/health"), ("POST", "/v1/nope/123"),
                         ("POST", "/v1/x"), ("POST", "/v1/fail")):
        await _send(tracing, False, method, path)
    tracing.provider.force_flush()
    spans = exporter.get_finished_spans()
    assert [(s.name, s.kind, (s.attributes or {}).get("http.response.status_code"),
             s.status.status_code) for s in spans] == [
        ("POST /v1/x", SpanKind.SERVER, 200, StatusCode.UNSET),
        ("POST /v1/fail", SpanKind.SERVER, 503, StatusCode.ERROR)]
    tracing.shutdown()


async def test_a_hive_or_worker_traces_only_what_its_caller_traced(
        traced: tuple[Tracing, InMemorySpanExporter]) -> None:
    tracing, exporter = traced
    await _send(tracing, True, "POST", "/v1/x")  # a job's call: no context, no span
    await _send(tracing, True, "POST", "/v1/x", {"traceparent": PARENT})
    # sampled out by the queen: the span exists but records nothing
    await _send(tracing, True, "POST", "/v1/x", {"traceparent": PARENT[:-2] + "00"})
    tracing.provider.force_flush()
    spans = exporter.get_finished_spans()
    assert len(spans) == 1 and spans[0].parent is not None
    assert spans[0].parent.span_id == 0x00f067aa0ba902b7
    tracing.shutdown()


@pytest.mark.parametrize("headers", [
    {"traceparent": "garbage"},
    {"traceparent": "00-" + "0" * 32 + "-" + "0" * 16 + "-01"},  # all-zero ids: invalid
    {"traceparent": "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
    {"traceparent": PARENT + "\x00", "tracestate": "a=" + "b" * 100_000},
    {"traceparent": PARENT, "tracestate": ",".join(f"k{i}=v" for i in range(500))},
])
async def test_hostile_trace_headers_start_a_new_trace_or_are_trimmed(
        traced: tuple[Tracing, InMemorySpanExporter], headers: dict[str, str]) -> None:
    tracing, exporter = traced
    await _send(tracing, False, "POST", "/v1/x", headers)
    tracing.provider.force_flush()
    (span,) = exporter.get_finished_spans()
    assert (span.attributes or {})["http.response.status_code"] == 200
    assert len(span.context.trace_state) <= 32  # W3C's bound on tracestate entries
    tracing.shutdown()


async def test_the_relay_sends_its_span_s_traceparent_and_records_a_failure(
        traced: tuple[Tracing, InMemorySpanExporter]) -> None:
    tracing, exporter = traced
    transport = FakeTransport({"http://w1": REFUSE})
    registry, _, _ = _setup(transport)
    relay = Relay(registry, Credentials(), transport, FAST, tracing)
    with tracing.tracer.start_as_current_span("request"), pytest.raises(WorkerUnreachable):
        await relay.forward(_worker("w1"), "/v1/chat/completions", b"{}", stream=False)
    _clean(registry, relay)
    tracing.provider.force_flush()
    client = next(s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT)
    assert client.status.status_code is StatusCode.ERROR
    assert (client.attributes or {})["error.type"] == "TransportError"
    sent = transport.sent[0][1]["traceparent"]
    assert sent.split("-")[2] == f"{client.context.span_id:016x}"
    tracing.shutdown()


async def test_off_the_relay_sends_no_traceparent() -> None:
    transport = FakeTransport({"http://w1": (200, b"{}")})
    registry, relay, _ = _setup(transport)
    exporter = InMemorySpanExporter()
    other = start_tracing("someone-else", exporter=exporter)
    with other.tracer.start_as_current_span("a span the relay must not continue"):
        await relay.forward(_worker("w1"), "/v1/chat/completions", b"{}", stream=False)
    _clean(registry, relay)
    assert "traceparent" not in transport.sent[0][1]
    other.shutdown()
