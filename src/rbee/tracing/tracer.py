"""A daemon's tracer: its provider, the W3C trace-context headers, spans under a request's.

Spans are exported in batches off the request path (the SDK's BatchSpanProcessor, a thread
of its own); `shutdown` flushes what is pending when the daemon exits. Nothing global is
set: each daemon holds its own `Tracing` and hands it to what records spans.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator, Mapping

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from rbee import __version__

Attributes = Mapping[str, AttributeValue]
_CONTEXT_HEADERS = (b"traceparent", b"tracestate")


class Tracing:
    """One daemon's tracing, when it is on (callers hold None when it is off)."""

    def __init__(self, provider: TracerProvider, endpoint: str | None = None) -> None:
        self.provider = provider
        self.endpoint = endpoint  # where it exports (children are told: queen.local_hive)
        self.tracer = provider.get_tracer("rbee", __version__)
        self._propagator = TraceContextTextMapPropagator()

    def extract(self, headers: Iterable[tuple[bytes, bytes]]) -> Context | None:
        """The caller's trace context from ASGI headers; None when it sent none. One that
        is malformed is an empty context (the propagator ignores what it cannot parse): a
        new trace."""
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers
                   if k in _CONTEXT_HEADERS}
        return self._propagator.extract(carrier) if carrier else None

    def inject(self, headers: dict[str, str], span: Span | None = None) -> None:
        """Add `traceparent` (and `tracestate`) for `span`, else for the current span."""
        context = trace.set_span_in_context(span) if span is not None else None
        self._propagator.inject(headers, context=context)

    def child(self, name: str, attributes: Attributes | None = None,
              kind: SpanKind = SpanKind.INTERNAL) -> Span | None:
        """A started span under the current one; None outside a traced request (background
        work: a job, a watchdog) so that no trace of its own is begun for it."""
        if not trace.get_current_span().is_recording():
            return None
        return self.tracer.start_span(name, kind=kind, attributes=attributes)

    @contextlib.contextmanager
    def step(self, name: str, attributes: Attributes | None = None,
             kind: SpanKind = SpanKind.INTERNAL) -> Iterator[Span | None]:
        """`child`, current for the block (its own children nest under it) and ended after
        it; an exception is recorded on it. Yields None outside a traced request."""
        span = self.child(name, attributes, kind)
        if span is None:
            yield None
            return
        # Not the SDK's own exception recording: it exports the message and the stack, and
        # rbee's messages may name a `file:` model's path (docs/tracing.md: type only).
        with trace.use_span(span, end_on_exit=True, record_exception=False,
                            set_status_on_exception=False):
            try:
                yield span
            except BaseException as exc:
                errored(span, exc)
                raise

    def client(self, name: str, attributes: Attributes) -> ClientSpan | None:
        """A call to another daemon, under the current span (None outside a request)."""
        span = self.child(name, attributes, SpanKind.CLIENT)
        return None if span is None else ClientSpan(span, self)

    def shutdown(self) -> None:
        """Export what is pending (bounded by the processor's export timeout), then stop."""
        self.provider.shutdown()

    async def close(self) -> None:
        """`shutdown` from an app's lifespan, off the event loop. The lifespan, not the
        entrypoint: uvicorn re-raises the SIGTERM it caught once it has stopped, and the
        process ends there, before any code after `serve` runs."""
        await asyncio.to_thread(self.shutdown)


def failed(span: Span, description: str) -> None:
    span.set_status(Status(StatusCode.ERROR, description[:200]))


def errored(span: Span, exc: BaseException) -> None:
    """`exc` ended the span's work: its type only (a message may quote the request). A
    client gone (cancelled, a generator closed) is how a request may end, not an error."""
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        span.set_attribute("rbee.cancelled", True)
        return
    span.set_attribute("error.type", type(exc).__qualname__)
    failed(span, type(exc).__qualname__)


class ClientSpan:
    """One outgoing call's span: its trace context goes out in the call's headers."""

    __slots__ = ("_tracing", "span")

    def __init__(self, span: Span, tracing: Tracing) -> None:
        self.span = span
        self._tracing = tracing

    def inject(self, headers: dict[str, str]) -> None:
        self._tracing.inject(headers, self.span)

    def answered(self, status: int) -> None:
        self.span.set_attribute("http.response.status_code", status)
        if status >= 500:
            failed(self.span, f"HTTP {status}")

    def raised(self, exc: BaseException) -> None:
        """The call ended with `exc` (see `errored`)."""
        errored(self.span, exc)

    def end(self, reason: str | None = None) -> None:
        """`reason`: why the call was cut short (a deadline, a stall, a lost worker)."""
        if reason is not None:
            self.span.set_attribute("rbee.call.ended", reason[:100])
            failed(self.span, reason)
        self.span.end()


def start_tracing(service: str, endpoint: str | None = None, *,
                  exporter: SpanExporter | None = None,
                  instance: str | None = None) -> Tracing:
    """Tracing for `service` (queen-rbee, rbee-hive, rbee-worker), exporting over OTLP/HTTP
    to `endpoint` unless an `exporter` is given (tests). OTEL_RESOURCE_ATTRIBUTES,
    OTEL_TRACES_SAMPLER, OTEL_BSP_* and OTEL_EXPORTER_OTLP_HEADERS/_TIMEOUT are read by the
    SDK itself; service.name is always the daemon's (an inherited OTEL_SERVICE_NAME would
    make the queen, its hive and its workers one service)."""
    attributes: dict[str, AttributeValue] = {"service.name": service,
                                             "service.version": __version__}
    if instance:
        attributes["service.instance.id"] = instance
    provider = TracerProvider(resource=Resource.create(attributes))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=endpoint)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return Tracing(provider, endpoint)
