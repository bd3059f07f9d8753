"""A fast lane for the few hot POST routes, around the framework's middleware stack.

FastAPI's stack (error, telemetry, body-limit, exception, exit-stack middlewares, then route
matching through every included router) costs more than the queen may add to a request in
total (bench/queen_overhead.py: p50 budget 0.5 ms). Hot routes get the same guarantees here:
the body limit, OpenAI error envelopes, and `request.app` for the handler's services.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from rbee.core.errors import RbeeError
from rbee.web.errors import error_response, internal_error_response
from rbee.web.limits import BodyLimit

Handler = Callable[[Request], Awaitable[Response]]


class FastLane:
    def __init__(self, app: ASGIApp, routes: Mapping[str, Handler], max_body: int) -> None:
        self.app = app
        self._routes = dict(routes)
        self._limited = BodyLimit(self._dispatch, max_body)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and scope["method"] == "POST"
                and scope["path"] in self._routes):
            scope["app"] = self.app  # handlers reach their services through request.app
            await self._limited(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await self._routes[scope["path"]](request)
        except RbeeError as exc:
            response = error_response(exc)
        except Exception as exc:
            response = internal_error_response(exc)
        await response(scope, receive, send)
