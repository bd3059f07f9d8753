"""Tenants, users and API keys (issue 13): the bootstrap admin creates them; keys are hashed,
scoped (role, models, priority, expiry), revocable at once; jobs and stored responses belong
to a tenant. The queen app runs in process (its lifespan, no hive)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rbee.core.clock import FakeClock
from rbee.queen.app import create_app
from rbee.queen.identity import KEY_PREFIX, key_id_of
from rbee.queen.services import QueenServices, build_services
from rbee.queen.settings import QueenSettings
from rbee.storage.audit import Filters

BOOT = "bootstrap-admin-token-for-tests"


class Queen:
    def __init__(self, http: httpx.AsyncClient, svc: QueenServices, clock: FakeClock) -> None:
        self.http = http
        self.svc = svc
        self.clock = clock

    async def as_(self, key: str, method: str, path: str, **kw: Any) -> httpx.Response:
        return await self.http.request(method, path, headers={"Authorization": f"Bearer {key}"},
                                       **kw)

    async def admin(self, method: str, path: str, **kw: Any) -> Any:
        r = await self.as_(BOOT, method, f"/v1/admin{path}", **kw)
        assert r.status_code == 200, r.text
        return r.json()

    async def key(self, tenant: str, user: str = "ann", **fields: Any) -> dict[str, Any]:
        tenants = {t["name"]: t for t in (await self.admin("GET", "/tenants"))["data"]}
        if tenant not in tenants:
            await self.admin("POST", "/tenants", json={"name": tenant})
        made = await self.admin("POST", "/users", json={"tenant": tenant,
                                                        "name": f"{user}-{len(tenants)}"})
        key: dict[str, Any] = await self.admin("POST", "/keys",
                                               json={"user": made["id"], **fields})
        return key


async def _queen(tmp_path: Path, token: str | None) -> AsyncIterator[Queen]:
    settings = QueenSettings(api_token=token, state_dir=tmp_path, local_hive=False)
    clock = FakeClock(start=1_800_000_000.0)
    svc = build_services(settings, clock=clock)
    app = create_app(settings, services=svc)
    transport = httpx.ASGITransport(app=app)
    async with (app.router.lifespan_context(app),  # type: ignore[attr-defined]
                httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http):
        yield Queen(http, svc, clock)


@pytest.fixture
async def queen(tmp_path: Path) -> AsyncIterator[Queen]:
    async for q in _queen(tmp_path, BOOT):
        yield q


async def test_a_key_is_shown_once_and_stored_only_as_a_hash(queen: Queen,
                                                              tmp_path: Path) -> None:
    made = await queen.key("acme", role="user", name="ci")
    key = made["key"]
    assert key.startswith(f"{KEY_PREFIX}{made['id']}-") and key_id_of(key) == made["id"]
    assert len(key) > 40
    listed = (await queen.admin("GET", "/keys"))["data"]
    assert [k["id"] for k in listed] == [made["id"]] and "key" not in listed[0]
    assert (await queen.as_(key, "GET", "/v1/models")).status_code == 200
    queen.svc.db.close()  # everything written: the file holds no key
    assert _files_holding(tmp_path, [key.encode(), key.split("-", 2)[2].encode()]) == []


def _files_holding(folder: Path, secrets: list[bytes]) -> list[str]:
    files = list(folder.glob("queen.db*"))
    assert files  # the database is there to search
    return [f.name for f in files for s in secrets if s in f.read_bytes()]


async def test_bad_keys_are_401_and_never_echoed_or_logged(
        queen: Queen, caplog: pytest.LogCaptureFixture) -> None:
    made = await queen.key("acme")
    forged = made["key"][:-4] + "AAAA"
    caplog.set_level(logging.DEBUG)
    for header in ({}, {"Authorization": "Bearer "}, {"Authorization": f"Bearer {forged}"},
                   {"Authorization": "Bearer rbee-unknown-secret"},
                   {"Authorization": f"Basic {made['key']}"}):
        r = await queen.http.get("/v1/models", headers=header)
        assert r.status_code == 401, header
        assert r.json()["error"]["code"] == "invalid_api_key"
        assert forged not in r.text and made["key"] not in r.text
    assert forged not in caplog.text and made["key"] not in caplog.text


async def test_roles_decide_the_routes_and_operations(queen: Queen) -> None:
    user = (await queen.key("acme", role="user"))["key"]
    operator = (await queen.key("acme", role="operator"))["key"]
    admin = (await queen.key("ops", role="admin"))["key"]
    for key, path, status in ((user, "/v1/workers", 403), (user, "/v1/admin/keys", 403),
                              (user, "/v1/scheduler", 403), (operator, "/v1/workers", 200),
                              (operator, "/v1/admin/tenants", 403),
                              (admin, "/v1/admin/tenants", 200)):
        r = await queen.as_(key, "GET", path)
        assert r.status_code == status, (path, r.text)
        if status == 403:
            assert r.json()["error"]["type"] == "permission_error"
    # job operations: each needs its role
    r = await queen.as_(user, "POST", "/v1/jobs", json={"operation": "worker_spawn"})
    assert r.status_code == 403 and "operator" in r.json()["error"]["message"]
    r = await queen.as_(operator, "POST", "/v1/jobs", json={"operation": "script_delete",
                                                              "name": "x"})
    assert r.status_code == 403 and "admin" in r.json()["error"]["message"]
    r = await queen.as_(user, "POST", "/v1/jobs", json={"operation": "status"})
    assert r.status_code == 200


async def test_revocation_takes_effect_on_the_next_request(queen: Queen) -> None:
    made = await queen.key("acme")
    assert (await queen.as_(made["key"], "GET", "/v1/models")).status_code == 200
    revoked = await queen.admin("DELETE", f"/keys/{made['id']}")
    assert revoked["revoked_at"] is not None
    r = await queen.as_(made["key"], "GET", "/v1/models")
    assert r.status_code == 401
    again = await queen.as_(BOOT, "DELETE", f"/v1/admin/keys/{made['id']}")
    assert again.status_code == 409
    missing = await queen.as_(BOOT, "DELETE", "/v1/admin/keys/nope")
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "key_id"


async def test_an_expired_key_is_refused(queen: Queen) -> None:
    made = await queen.key("acme", expires_in_days=1)
    assert (await queen.as_(made["key"], "GET", "/v1/models")).status_code == 200
    queen.clock.advance(86_401)
    r = await queen.as_(made["key"], "GET", "/v1/models")
    assert r.status_code == 401 and "expired" in r.json()["error"]["message"]


async def test_model_and_priority_scope(queen: Queen) -> None:
    made = await queen.key("acme", models=["minilm"], max_priority="batch")
    assert (await queen.admin("GET", "/keys"))["data"][0]["models"] == ["all-minilm-l6-v2"]
    key = made["key"]
    r = await queen.as_(key, "POST", "/v1/chat/completions", json={
        "model": "rbee-fake", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 403 and r.json()["error"]["param"] == "model"
    r = await queen.as_(key, "POST", "/v1/embeddings", json={"model": "minilm", "input": "x"})
    assert r.status_code == 403 and r.json()["error"]["param"] == "priority"
    r = await queen.as_(key, "POST", "/v1/jobs", json={"operation": "infer", "prompt": "x",
                                                        "model": "rbee-fake",
                                                        "priority": "batch"})
    assert r.status_code == 403 and r.json()["error"]["param"] == "model"
    r = await queen.as_(key, "POST", "/v1/jobs", json={"operation": "embed", "input": "x",
                                                        "priority": "batch"})
    assert r.status_code == 200  # the built-in embedding model is the one it may use


async def test_jobs_belong_to_their_tenant(queen: Queen) -> None:
    ann = (await queen.key("acme"))["key"]
    bob = (await queen.key("globex"))["key"]
    op = (await queen.key("globex", role="operator"))["key"]
    r = await queen.as_(ann, "POST", "/v1/jobs", json={"operation": "status"})
    job = r.json()["job_id"]
    for key, visible in ((ann, True), (bob, False), (op, True), (BOOT, True)):
        got = await queen.as_(key, "GET", f"/v1/jobs/{job}")
        assert got.status_code == (200 if visible else 404), key
        listed = (await queen.as_(key, "GET", "/v1/jobs")).json()["data"]
        assert (job in {j["job_id"] for j in listed}) is visible
        if not visible:
            assert got.json()["error"]["code"] == "job_not_found"
            for method, path in (("DELETE", f"/v1/jobs/{job}"),
                                 ("GET", f"/v1/jobs/{job}/stream")):
                assert (await queen.as_(key, method, path)).status_code == 404


async def test_stored_responses_belong_to_their_tenant(queen: Queen) -> None:
    ann = await queen.key("acme")
    bob = (await queen.key("globex"))["key"]
    response = {"id": "resp_1", "object": "response", "created_at": 1, "model": "m",
                "status": "completed", "output": []}
    queen.svc.responses.save("resp_1", 1.0, response, [], ann["tenant_id"])
    assert (await queen.as_(bob, "GET", "/v1/responses/resp_1")).status_code == 404
    assert (await queen.as_(bob, "DELETE", "/v1/responses/resp_1")).status_code == 404
    r = await queen.as_(bob, "POST", "/v1/responses", json={
        "model": "rbee-fake", "input": "hi", "previous_response_id": "resp_1"})
    assert r.status_code == 404 and r.json()["error"]["param"] == "previous_response_id"
    assert (await queen.as_(ann["key"], "GET", "/v1/responses/resp_1")).status_code == 200


async def test_bad_admin_input(queen: Queen) -> None:
    async def bad(path: str, body: Any, status: int = 400) -> dict[str, Any]:
        r = await queen.as_(BOOT, "POST", f"/v1/admin{path}", json=body)
        assert r.status_code == status, (path, body, r.text)
        error: dict[str, Any] = r.json()["error"]
        return error

    assert (await bad("/tenants", {"name": "a b"}))["param"] == "name"
    assert (await bad("/tenants", {"name": "x" * 65}))["param"] == "name"
    assert (await bad("/tenants", {"name": "eu", "regions": []}))["param"] == "regions"
    assert (await bad("/tenants", {"name": "eu", "regions": ["e u"]}))["param"] == "regions"
    await queen.admin("POST", "/tenants", json={"name": "acme"})
    assert (await bad("/tenants", {"name": "acme"}, 409))["param"] == "name"
    assert (await bad("/users", {"tenant": "nope", "name": "ann"}, 404))["param"] == "tenant"
    assert (await bad("/keys", {"user": "nope"}, 404))["param"] == "user"
    user = await queen.admin("POST", "/users", json={"tenant": "acme", "name": "ann"})
    assert (await bad("/keys", {"user": user["id"], "role": "root"}))["param"] == "role"
    assert (await bad("/keys", {"user": user["id"], "models": []}))["param"] == "models"
    assert (await bad("/keys", {"user": user["id"], "models": ["nope"]}, 404))[
        "param"] == "model"
    assert (await bad("/keys", {"user": user["id"], "expires_in_days": -1}))[
        "param"] == "expires_in_days"


async def test_without_a_bootstrap_token_no_key_can_be_made(tmp_path: Path) -> None:
    async for q in _queen(tmp_path, None):
        r = await q.http.post("/v1/admin/tenants", json={"name": "acme"})
        assert r.status_code == 400 and "RBEE_QUEEN_API_TOKEN" in r.json()["error"]["message"]
        assert (await q.http.get("/v1/models")).status_code == 200  # the local admin


async def test_videos_belong_to_their_tenant(queen: Queen) -> None:
    ann = (await queen.key("acme"))["key"]
    bob = (await queen.key("globex"))["key"]
    r = await queen.as_(ann, "POST", "/v1/videos", json={"model": "rbee-fake-video",
                                                          "prompt": "bees", "size": "64x64",
                                                          "seconds": "1"})
    assert r.status_code == 200, r.text
    video = r.json()["id"]
    for key, visible in ((ann, True), (bob, False), (BOOT, True)):
        got = await queen.as_(key, "GET", f"/v1/videos/{video}")
        assert got.status_code == (200 if visible else 404), key
        listed = (await queen.as_(key, "GET", "/v1/videos")).json()["data"]
        assert (video in {v["id"] for v in listed}) is visible
    for method, path in (("DELETE", f"/v1/videos/{video}"),
                         ("GET", f"/v1/videos/{video}/content")):
        assert (await queen.as_(bob, method, path)).status_code == 404
    scoped = (await queen.key("acme", models=["rbee-fake"]))["key"]
    r = await queen.as_(scoped, "POST", "/v1/videos", json={"model": "rbee-fake-video",
                                                             "prompt": "bees"})
    assert r.status_code == 403 and r.json()["error"]["param"] == "model"


async def test_admin_changes_are_audited_with_who_made_them(queen: Queen) -> None:
    admin = await queen.key("ops", role="admin")
    made = await queen.admin("POST", "/tenants", json={"name": "acme"})
    r = await queen.as_(admin["key"], "PUT", "/v1/admin/tenants/acme/limits",
                        json={"requests_per_minute": 5})
    assert r.status_code == 200, r.text
    await queen.svc.audit.flush()
    entries = [e for e, _ in await queen.svc.audit.page(Filters(limit=100))]
    actions = [(e.action, e.subject) for e in entries]
    assert ("admin.tenant.create", "acme") in actions and ("admin.quota.set", "acme") in actions
    quota = next(e for e in entries if e.action == "admin.quota.set")
    assert quota.tenant == admin["tenant_id"]  # the admin key's tenant made the change
    assert admin["key"] not in repr(entries) and made["id"]
