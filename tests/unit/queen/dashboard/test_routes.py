"""The dashboard's routes and the session cookie as a key, in process (no hive): malformed,
oversized and hostile input; CSRF; a revoked key ending its session; static files."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rbee.api.cluster import Device, HiveTelemetry, WorkerInfo
from rbee.core.clock import FakeClock
from rbee.core.states import WorkerState
from rbee.queen.app import create_app
from rbee.queen.services import QueenServices, build_services
from rbee.queen.settings import QueenSettings
from rbee.storage.audit import Filters

BOOT = "bootstrap-admin-token-for-dashboard-tests"
BEARER = {"Authorization": f"Bearer {BOOT}"}


class Queen:
    def __init__(self, http: httpx.AsyncClient, svc: QueenServices) -> None:
        self.http = http
        self.svc = svc

    async def login(self, key: str) -> dict[str, Any]:
        r = await self.http.post("/ui/login", json={"api_key": key})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def user_key(self, role: str = "user") -> dict[str, Any]:
        r = await self.http.post("/v1/admin/tenants", json={"name": f"t-{role}"}, headers=BEARER)
        assert r.status_code == 200, r.text
        r = await self.http.post("/v1/admin/users", json={"tenant": f"t-{role}", "name": "ann"},
                                 headers=BEARER)
        assert r.status_code == 200, r.text
        r = await self.http.post("/v1/admin/keys", json={"user": r.json()["id"], "role": role},
                                 headers=BEARER)
        assert r.status_code == 200, r.text
        key: dict[str, Any] = r.json()
        return key


@pytest.fixture
async def queen(tmp_path: Path) -> AsyncIterator[Queen]:
    settings = QueenSettings(api_token=BOOT, state_dir=tmp_path, local_hive=False)
    svc = build_services(settings, clock=FakeClock(start=1_800_000_000.0))
    app = create_app(settings, services=svc)
    transport = httpx.ASGITransport(app=app, client=("10.0.0.7", 1234))
    async with (app.router.lifespan_context(app),  # type: ignore[attr-defined]
                httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http):
        yield Queen(http, svc)


async def test_login_returns_the_role_and_a_csrf_token_and_sets_a_strict_cookie(
        queen: Queen) -> None:
    r = await queen.http.post("/ui/login", json={"api_key": BOOT})
    assert r.status_code == 200
    body = r.json()
    assert body["role"] == "admin" and body["tenant"] is None
    assert body["key_prefix"] == "bootstrap" and len(body["csrf_token"]) >= 40
    cookie = r.headers["set-cookie"].lower()
    assert cookie.startswith("rbee_session=")
    for flag in ("httponly", "samesite=strict", "path=/"):
        assert flag in cookie, cookie
    assert "secure" not in cookie  # plain http here; https gets Secure
    assert BOOT not in r.headers["set-cookie"] and BOOT not in r.text


async def test_behind_a_tls_proxy_the_cookie_is_secure(tmp_path: Path) -> None:
    """The queen sees plain http from its TLS proxy; its https public URL says the browser
    is on https, so the cookie must not travel in clear."""
    settings = QueenSettings(api_token=BOOT, state_dir=tmp_path, local_hive=False,
                             public_url="https://rbee.example.org")
    svc = build_services(settings, clock=FakeClock(start=1_800_000_000.0))
    app = create_app(settings, services=svc)
    async with (app.router.lifespan_context(app),  # type: ignore[attr-defined]
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                  base_url="http://127.0.0.1") as http):
        r = await http.post("/ui/login", json={"api_key": BOOT})
    assert r.status_code == 200, r.text
    assert "; secure" in r.headers["set-cookie"].lower()


async def test_a_keys_session_shows_its_prefix_never_its_secret(queen: Queen) -> None:
    key = await queen.user_key()
    body = await queen.login(key["key"])
    assert body["role"] == "user" and body["tenant"] == "t-user"
    assert body["key_prefix"] == f"rbee-{key['id']}"
    r = await queen.http.get("/ui/session")
    assert r.status_code == 200 and r.json() == body
    assert key["key"].rsplit("-", 1)[1] not in r.text


@pytest.mark.parametrize(("content", "headers", "status"), [
    (b"{", {"content-type": "application/json"}, 400),
    (b"[]", {"content-type": "application/json"}, 400),
    (b"{}", {"content-type": "application/json"}, 400),
    (b'{"api_key": 5}', {"content-type": "application/json"}, 400),
    (b'{"api_key": ""}', {"content-type": "application/json"}, 400),
    (b'{"api_key": "k", "role": "admin"}', {"content-type": "application/json"}, 400),
    (b'{"api_key": "' + b"x" * 600 + b'"}', {"content-type": "application/json"}, 400),
    (b"api_key=x", {"content-type": "application/x-www-form-urlencoded"}, 415),
    (b'{"api_key": "' + b"x" * (9 * 1024 * 1024) + b'"}',
     {"content-type": "application/json"}, 413),
    (b'{"api_key": "\\u0000<script>"}', {"content-type": "application/json"}, 401),
])
async def test_malformed_oversized_and_hostile_logins_get_an_envelope(
        queen: Queen, content: bytes, headers: dict[str, str], status: int) -> None:
    r = await queen.http.post("/ui/login", content=content, headers=headers)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "<script>" not in error["message"]
    assert "set-cookie" not in r.headers


async def test_failed_logins_are_audited_and_throttled(queen: Queen) -> None:
    for _ in range(10):
        r = await queen.http.post("/ui/login", json={"api_key": "rbee-abc-guess"})
        assert r.status_code == 401
    r = await queen.http.post("/ui/login", json={"api_key": BOOT})  # even the right one
    assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_logins"
    assert int(r.headers["retry-after"]) >= 1
    await queen.svc.audit.flush()
    entries = [e for e, _ in await queen.svc.audit.page(Filters(limit=100))]
    failures = [e for e in entries if e.action == "auth.failure"]
    assert len(failures) == 10
    assert all("guess" not in str(e.details) for e in failures)  # the key is never logged


async def test_writes_with_the_cookie_need_the_csrf_header(queen: Queen) -> None:
    session = await queen.login(BOOT)
    job = {"operation": "status"}
    r = await queen.http.post("/v1/jobs", json=job)
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed"
    r = await queen.http.post("/v1/jobs", json=job, headers={"X-CSRF-Token": "nope"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed"
    r = await queen.http.post("/v1/jobs", json=job,
                              headers={"X-CSRF-Token": session["csrf_token"]})
    assert r.status_code == 200, r.text
    r = await queen.http.delete("/v1/jobs/job-x")
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed"
    r = await queen.http.post("/ui/logout")  # logging out is a write too
    assert r.status_code == 403
    assert (await queen.http.get("/v1/jobs")).status_code == 200  # reads need no token


async def test_the_sessions_role_is_the_only_authority(queen: Queen) -> None:
    key = await queen.user_key("user")
    session = await queen.login(key["key"])
    csrf = {"X-CSRF-Token": session["csrf_token"]}
    r = await queen.http.get("/v1/hives", headers=csrf)
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    r = await queen.http.post("/v1/jobs", json={"operation": "worker_spawn"}, headers=csrf)
    assert r.status_code == 403
    r = await queen.http.post("/v1/admin/tenants", json={"name": "x"}, headers=csrf)
    assert r.status_code == 403


async def test_a_revoked_key_ends_its_session_on_the_next_request(queen: Queen) -> None:
    key = await queen.user_key("operator")
    await queen.login(key["key"])
    assert (await queen.http.get("/ui/session")).status_code == 200
    r = await queen.http.delete(f"/v1/admin/keys/{key['id']}", headers=BEARER)
    assert r.status_code == 200, r.text
    r = await queen.http.get("/ui/session")
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
    assert len(queen.http._transport.app.state.dashboard_sessions) == 0  # type: ignore[attr-defined]


async def test_a_bearer_header_wins_over_the_cookie(queen: Queen) -> None:
    key = await queen.user_key("user")
    await queen.login(key["key"])
    r = await queen.http.get("/ui/session", headers=BEARER)
    assert r.json()["role"] == "admin" and r.json()["csrf_token"] != ""
    r = await queen.http.post("/v1/jobs", json={"operation": "status"}, headers=BEARER)
    assert r.status_code == 200  # a CLI-style call needs no CSRF token


async def test_a_forged_or_ended_cookie_is_a_401(queen: Queen) -> None:
    for value in ("forged", "x" * 5000, "%00"):
        r = await queen.http.get("/ui/session", headers={"Cookie": f"rbee_session={value}"})
        assert r.status_code == 401, value
    r = await queen.http.get("/ui/session")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


async def test_the_page_and_its_files_are_served_open_with_their_types(queen: Queen) -> None:
    r = await queen.http.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    for path, kind in (("app.js", "text/javascript"), ("style.css", "text/css"),
                       ("pages/manifest.js", "text/javascript")):
        r = await queen.http.get(f"/ui/static/{path}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind), path
        assert r.headers["cache-control"] == "no-cache"
        assert r.headers["x-content-type-options"] == "nosniff"
    # the page under its static name is the page too: no site may frame it (clickjacking)
    r = await queen.http.get("/ui/static/index.html")
    assert r.status_code == 200 and r.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


@pytest.mark.parametrize("path", [
    "../routes.py", "..%2froutes.py", "%2e%2e/routes.py", "pages/../../routes.py",
    "..%2f..%2f..%2fsettings.py", "/etc/passwd", "%2fetc%2fpasswd", "nope.js",
    "pages", "index.html%00.js", "x" * 300 + ".js", "../__init__.py",
])
async def test_static_paths_outside_the_folder_or_unknown_are_404(queen: Queen,
                                                                   path: str) -> None:
    r = await queen.http.get(f"/ui/static/{path}")
    # A `..` the client folds before sending leaves /ui/static/: the key check answers then.
    assert r.status_code in (401, 404), (path, r.text[:100])
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}


async def test_keep_warm_takes_a_strict_body_and_an_operator(queen: Queen) -> None:
    queen.svc.registry.report(HiveTelemetry(
        hive_id="h", url="http://h", version="0", pid=1, workers=[WorkerInfo(
            id="w1", hive_id="h", model="m", model_path="", device="cpu", engine="fake",
            url="http://w", state=WorkerState.READY)],
        devices=[Device(id="cpu", kind="cpu", name="cpu", memory_total=1, memory_free=1)]))
    path = "/v1/workers/w1/keep-warm"
    for bad in ({}, {"keep_warm": 1}, {"keep_warm": "yes"}, {"keep_warm": True, "x": 1}):
        r = await queen.http.post(path, json=bad, headers=BEARER)
        assert r.status_code == 400, bad
    r = await queen.http.post("/v1/workers/nope/keep-warm", json={"keep_warm": True},
                              headers=BEARER)
    assert r.status_code == 404 and r.json()["error"]["code"] == "worker_not_found"
    user = await queen.user_key("user")
    r = await queen.http.post(path, json={"keep_warm": True},
                              headers={"Authorization": f"Bearer {user['key']}"})
    assert r.status_code == 403
    r = await queen.http.post(path, json={"keep_warm": True}, headers=BEARER)
    assert r.status_code == 200 and r.json() == {"id": "w1", "keep_warm": True}
    assert queen.svc.registry.is_kept_warm("w1")
    r = await queen.http.post(path, json={"keep_warm": False}, headers=BEARER)
    assert not queen.svc.registry.is_kept_warm("w1")
