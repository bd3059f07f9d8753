"""A server span per traced request, at the ASGI boundary (installed only when tracing is on).

Only the POST routes a daemon names are traced (inference, a hive's spawn): health probes,
telemetry and scrapes would otherwise be most of the spans. Each route is a fixed path, so
the span's name and `http.route` are that template, never a raw path. The span stays
current for the whole answer: a stream's span ends when its last byte went out.
"""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry import trace
from opentelemetry.trace import SpanKind
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rbee.tracing.tracer import Attributes, Tracing, errored, failed

# What a daemon adds to the span once its app has answered (the model, the tenant).
Describe = Callable[[Scope], Attributes]


class TracedRequests:
    def __init__(self, app: ASGIApp, tracing: Tracing, routes: frozenset[str],
                 describe: Describe | None = None, *, joined_only: bool = False) -> None:
        """`joined_only`: trace only requests that carry a trace context (a hive's, a
        worker's: their caller is the queen, and a call it did not trace — a job, a
        watchdog's spawn — must not begin a trace of its own)."""
        self.app = app
        self._tracing = tracing
        self._routes = routes
        self._describe = describe
        self._joined_only = joined_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Every traced route is a POST; a GET of the same path (a hive's worker list) is not.
        if scope["type"] != "http" or scope["path"] not in self._routes \
                or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        context = self._tracing.extract(scope["headers"])
        if context is None and self._joined_only:
            await self.app(scope, receive, send)
            return
        route, method = scope["path"], scope["method"]
        status = 0  # 0: no answer started (the client went away, or the app raised)

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        tracer = self._tracing.tracer
        with tracer.start_as_current_span(
                f"{method} {route}", context=context,
                kind=SpanKind.SERVER, record_exception=False, set_status_on_exception=False,
                attributes={"http.request.method": method, "http.route": route}) as span:
            try:
                await self.app(scope, receive, sending)
            except BaseException as exc:  # its type only, never its message (docs/tracing.md)
                errored(span, exc)
                raise
            finally:
                if status:
                    span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    failed(span, f"HTTP {status}")
                if self._describe is not None:
                    span.set_attributes(self._describe(scope))


def current_span_attributes(attributes: Attributes) -> None:
    """Add to the request's span (a route that knows more than the middleware can see)."""
    trace.get_current_span().set_attributes(attributes)
