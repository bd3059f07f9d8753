"""BrowserGuard: what a web page sends (rebound Host, foreign Origin) is refused; CORS for
the origins an operator allowed; everything a non-browser client sends passes untouched."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from rbee.queen.app import create_app
from rbee.queen.settings import QueenSettings
from rbee.web.origin import CORS_METHODS, LOOPBACK_NAMES, BrowserGuard, trusted_hosts

EVIL = "http://evil.example"
UI = "http://localhost:3000"


class Inner:
    """The app behind the guard: records what reached it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls.append(f"{scope['method']} {scope['path']}")
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"inner"})


def guarded(hosts: Collection[str] | None = LOOPBACK_NAMES,
            origins: Collection[str] = ()) -> tuple[Inner, httpx.AsyncClient]:
    inner = Inner()
    app = BrowserGuard(inner, allowed_hosts=hosts, allowed_origins=origins)
    return inner, httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                    base_url="http://127.0.0.1:7833")


def refused(r: httpx.Response, code: str) -> None:
    assert r.status_code == 403, r.text
    assert r.json() == {"error": {"message": r.json()["error"]["message"],
                                  "type": "permission_error", "param": None, "code": code}}
    assert "access-control-allow-origin" not in r.headers


@pytest.mark.parametrize("origin", [EVIL, "null", "http://127.0.0.1:9999", "http://localhost"])
async def test_a_foreign_origin_is_refused_before_the_app(origin: str) -> None:
    inner, client = guarded()
    async with client:
        refused(await client.post("/v1/jobs", json={}, headers={"Origin": origin}),
                "origin_not_allowed")
        refused(await client.get("/v1/jobs", headers={"Origin": origin}), "origin_not_allowed")
        preflight = {"Origin": origin, "Access-Control-Request-Method": "POST"}
        refused(await client.options("/v1/jobs", headers=preflight), "origin_not_allowed")
    assert inner.calls == []


@pytest.mark.parametrize("host", ["evil.example:7833", "evil.example", "EVIL.example:80",
                                  "localhost.evil.example:7833", "127.0.0.1.evil.example"])
async def test_a_host_that_names_no_address_of_ours_is_refused(host: str) -> None:
    inner, client = guarded()
    async with client:
        refused(await client.post("/v1/jobs", json={}, headers={"Host": host}),
                "host_not_allowed")
        # Same-origin from the rebound page's point of view: still refused.
        refused(await client.get("/health", headers={"Host": host, "Origin": f"http://{host}"}),
                "host_not_allowed")
    assert inner.calls == []


async def test_a_second_host_header_cannot_smuggle_a_foreign_name() -> None:
    inner = Inner()
    app = BrowserGuard(inner, allowed_hosts=LOOPBACK_NAMES, allowed_origins=())
    sent: list[int] = []

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.start":
            sent.append(int(str(message["status"])))

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "GET", "path": "/v1/jobs",
             "headers": [(b"host", b"127.0.0.1:7833"), (b"host", b"evil.example:7833")]}
    await app(scope, receive, send)  # type: ignore[arg-type]
    assert sent == [403] and inner.calls == []


@pytest.mark.parametrize("host", ["127.0.0.1:7833", "localhost:7833", "LOCALHOST", "[::1]:7833",
                                  "127.4.5.6:1", "192.168.1.20:7833", "[fe80::1]", "10.0.0.7"])
async def test_loopback_and_ip_literal_hosts_without_origin_pass(host: str) -> None:
    inner, client = guarded()
    async with client:
        r = await client.post("/v1/jobs", json={}, headers={"Host": host})
    assert r.status_code == 200 and r.text == "inner"
    assert "access-control-allow-origin" not in r.headers
    assert inner.calls == ["POST /v1/jobs"]


async def test_a_same_origin_request_passes_without_cors_headers() -> None:
    inner, client = guarded()
    async with client:
        r = await client.post("/v1/jobs", headers={"Origin": "http://127.0.0.1:7833"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    assert inner.calls == ["POST /v1/jobs"]


async def test_no_host_check_when_any_host_is_trusted() -> None:
    inner, client = guarded(hosts=None)
    async with client:
        r = await client.get("/v1/jobs", headers={"Host": "queen.lan:7833"})
        assert r.status_code == 200
        # The Origin check stays: a token does not make a foreign page welcome.
        refused(await client.get("/v1/jobs", headers={"Origin": EVIL}), "origin_not_allowed")
    assert inner.calls == ["GET /v1/jobs"]


async def test_an_allowed_origin_gets_a_preflight_and_cors_headers() -> None:
    inner, client = guarded(origins=["HTTP://LocalHost:3000/"])  # normalised like browsers do
    async with client:
        pre = await client.options("/v1/jobs", headers={
            "Origin": UI, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
            "Access-Control-Request-Private-Network": "true"})
        assert pre.status_code == 200, pre.text
        assert pre.headers["access-control-allow-origin"] == UI
        assert {"GET", "POST", "DELETE"} <= {
            m.strip() for m in pre.headers["access-control-allow-methods"].split(",")}
        assert pre.headers["access-control-allow-headers"] == "authorization, content-type"
        assert pre.headers["access-control-allow-private-network"] == "true"
        assert int(pre.headers["access-control-max-age"]) > 0
        assert inner.calls == []  # answered here, before the token check
        r = await client.post("/v1/jobs", headers={"Origin": UI})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == UI
        assert "Retry-After" in r.headers["access-control-expose-headers"]
        refused(await client.post("/v1/jobs", headers={"Origin": EVIL}), "origin_not_allowed")
    assert inner.calls == ["POST /v1/jobs"]


async def test_any_origin_when_star_is_allowed() -> None:
    _, client = guarded(origins=["*"])
    async with client:
        r = await client.post("/v1/jobs", headers={"Origin": EVIL})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"


def test_trusted_hosts() -> None:
    assert trusted_hosts("127.0.0.1", None, None, []) == frozenset(LOOPBACK_NAMES)
    # A wildcard bind is no name; an API token with no explicit list trusts any name.
    assert trusted_hosts("0.0.0.0", None, None, []) == frozenset(LOOPBACK_NAMES)
    assert trusted_hosts("0.0.0.0", "tok", None, []) is None
    assert trusted_hosts("127.0.0.1", None, None, ["*"]) is None
    assert trusted_hosts("0.0.0.0", "tok", None, ["Queen.LAN"]) == frozenset(
        {*LOOPBACK_NAMES, "queen.lan"})
    assert trusted_hosts("gpu-box", "tok", "http://queen.example:7833/", ["x"]) == frozenset(
        {*LOOPBACK_NAMES, "x", "gpu-box", "queen.example"})


async def test_the_queen_puts_the_guard_in_front_of_everything(tmp_path: Path) -> None:
    # No lifespan: a request that got past the guard would fail on the missing services.
    for settings, ok_origin in ((QueenSettings(state_dir=tmp_path), None),
                                (QueenSettings(state_dir=tmp_path, api_token="tok",
                                               allowed_origins=[UI]), UI)):
        app = create_app(settings)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport,
                                     base_url="http://127.0.0.1:7833") as client:
            refused(await client.post("/v1/jobs", json={"operation": "infer"},
                                      headers={"Origin": EVIL}), "origin_not_allowed")
            r = await client.get("/health", headers={"Host": "evil.example:7833"})
            if settings.api_token is None:
                refused(r, "host_not_allowed")
            if ok_origin is not None:  # the preflight needs no token; the request does
                pre = await client.options("/v1/jobs", headers={
                    "Origin": ok_origin, "Access-Control-Request-Method": "POST"})
                assert pre.status_code == 200 and pre.headers[
                    "access-control-allow-origin"] == ok_origin
                r = await client.post("/v1/jobs", json={}, headers={"Origin": ok_origin})
                assert r.status_code == 401
                assert r.headers["access-control-allow-origin"] == ok_origin


def test_an_allowed_origin_may_use_every_method_the_queen_routes(tmp_path: Path) -> None:
    """CORS_METHODS is what a browser page on an allowed origin may send: a method the
    queen routes but CORS leaves out (PUT limits, PATCH a tenant) would fail its preflight."""
    app = create_app(QueenSettings(state_dir=tmp_path, local_hive=False))
    assert isinstance(app, FastAPI)
    routed = {m.upper() for ops in app.openapi()["paths"].values() for m in ops}
    routed |= {m for r in app.routes for m in (getattr(r, "methods", None) or ())}
    assert {"PUT", "PATCH"} <= routed  # what the admin routes use
    assert routed - {"HEAD"} <= set(CORS_METHODS)
