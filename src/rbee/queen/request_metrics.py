"""Per-request metrics, taken at the ASGI boundary: what a client saw (status, latency, time
to first token, the gaps between tokens), whatever route served it.

An inference route names its model in the scope (`MODEL_KEY`, set by
queen.routes.openai.hints_for); the route label is the matched route's template (the router
leaves the route in the scope), else the path itself when it is one of the app's fixed
paths (a request refused before routing: 401, 403), else "unmatched" — never a raw path
(ids and probes would each be a new series). A refusal's reason is read from the error
envelope the client got, only for the statuses that carry one (403, 429, 503).
"""

from __future__ import annotations

import re
from time import perf_counter

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rbee.queen.metering import used_in
from rbee.queen.metrics import QueenMetrics

MODEL_KEY = "rbee.model"  # the public model name an inference route serves
UNMATCHED = "unmatched"
GONE = 499  # the client went away before an answer started (nginx's convention)
# Routes whose answers report engine `usage` (prompt/completion tokens).
_USAGE_ROUTES = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/embeddings"})
# Routes whose streams are token by token (a data frame per token); the Responses API's
# stream starts with events that are not tokens, so its first frame says nothing of them.
_TOKEN_STREAMS = frozenset({"/v1/chat/completions", "/v1/completions"})
_REFUSALS = frozenset({403, 429, 503})
_CODE = re.compile(rb'"code"\s*:\s*"([a-z_]{1,40})"')


class _Exchange:
    """One request's observations as its answer goes out."""

    __slots__ = ("first", "last", "model", "route", "started", "status")

    def __init__(self, started: float) -> None:
        self.started = started
        self.status = GONE
        self.first = 0.0  # when the first data frame went (0: none yet)
        self.last = 0.0
        self.route = ""
        self.model = ""


class RequestMetrics:
    """ASGI middleware: requests by route/model/status, latency histograms, tokens and
    refusals. The metrics are the services' (absent before start-up, or switched off)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._fixed: frozenset[str] | None = None  # the app's paths without parameters

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        services = getattr(scope["app"].state, "services", None) if scope["type"] == "http" \
            else None
        metrics: QueenMetrics | None = getattr(services, "metrics", None)
        if metrics is None:
            await self.app(scope, receive, send)
            return
        ex = _Exchange(perf_counter())

        async def observed(message: Message) -> None:
            if message["type"] == "http.response.body":
                self._body(metrics, scope, ex, message)
            elif message["type"] == "http.response.start":
                ex.status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        except Exception:
            # Unhandled: the error handler outside us answers 500 (not a client gone)
            if ex.status == GONE:
                ex.status = 500
            raise
        finally:
            self._done(metrics, scope, ex)

    def _body(self, metrics: QueenMetrics, scope: Scope, ex: _Exchange, message: Message
              ) -> None:
        body: bytes = message.get("body", b"")
        if ex.status == 200:
            if not ex.route:
                ex.route = self._route(scope)
                ex.model = metrics.models(scope.get(MODEL_KEY) or "")
            if ex.route not in _USAGE_ROUTES or not ex.model:
                return
            if message.get("more_body") or ex.first:  # a stream
                # Its tokens are counted where its usage is read, even when its client did
                # not ask for that frame (routes.openai `_Sending.used`).
                if ex.route in _TOKEN_STREAMS and b"data:" in body:
                    self._frame(metrics, ex)
                return
            used = used_in(body)
            if used is not None:
                metrics.used(ex.model, used.prompt_tokens, used.completion_tokens)
        elif ex.status in _REFUSALS:
            found = _CODE.search(body)
            if found:
                metrics.rejected(found.group(1).decode())

    @staticmethod
    def _frame(metrics: QueenMetrics, ex: _Exchange) -> None:
        now = perf_counter()
        if ex.first:
            metrics.inter_token.get(ex.model).observe(now - ex.last)
        else:
            ex.first = now
            metrics.first_token.get(ex.model).observe(now - ex.started)
        ex.last = now

    def _done(self, metrics: QueenMetrics, scope: Scope, ex: _Exchange) -> None:
        route = ex.route or self._route(scope)
        model = ex.model or (metrics.models(scope[MODEL_KEY]) if MODEL_KEY in scope else "")
        metrics.requests.get(route, model, str(ex.status)).inc()
        metrics.duration.get(route, model).observe(perf_counter() - ex.started)

    def _route(self, scope: Scope) -> str:
        route = scope.get("route")
        if isinstance(route, BaseRoute):
            path = getattr(route, "path", None)
            if isinstance(path, str):
                return path
        fixed = self._fixed
        if fixed is None:
            fixed = self._fixed = frozenset(
                p for r in scope["app"].routes
                if isinstance(p := getattr(r, "path", None), str) and "{" not in p)
        return scope["path"] if scope["path"] in fixed else UNMATCHED
