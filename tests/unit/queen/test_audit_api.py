"""/v1/admin/audit in process: pages and their cursor, verify, the streamed export."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from rbee.core.audit_chain import verify_export
from rbee.queen.actor import Actor
from rbee.queen.app import create_app
from rbee.queen.services import QueenServices, build_services
from rbee.queen.settings import QueenSettings


@pytest.fixture
async def queen(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, QueenServices]]:
    settings = QueenSettings(state_dir=tmp_path, local_hive=False)
    services = build_services(settings)
    app = create_app(settings, services)
    app.state.services = services  # type: ignore[attr-defined]  # what the lifespan does
    for i in range(5):
        services.audit.record("inference", actor=Actor(tenant_id="acme", user_id=f"u{i}"),
                              subject="rbee-fake", outcome="ok", details={"i": i})
    services.audit.admin_change("script.save", subject="fair", outcome="ok")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        yield client, services
    await services.http.aclose()
    services.db.close()


async def test_pages_follow_the_cursor(queen: tuple[httpx.AsyncClient, QueenServices]
                                       ) -> None:
    client, _ = queen
    seen: list[int] = []
    after = 0
    while True:
        page = (await client.get("/v1/admin/audit", params={"limit": 2, "after": after})
                ).json()
        seen += [e["seq"] for e in page["data"]]
        if page["next_cursor"] is None:
            break
        after = page["next_cursor"]
    assert seen == [1, 2, 3, 4, 5, 6]
    first = (await client.get("/v1/admin/audit", params={"limit": 1})).json()["data"][0]
    assert first["personal"] == [{"role": "actor", "user_id": "u0"}]
    assert first["tenant"] == "acme" and "u0" not in str(first["actor"])
    admin = (await client.get("/v1/admin/audit", params={"action": "admin."})).json()
    assert [e["subject"] for e in admin["data"]] == ["fair"]


async def test_verify_and_the_streamed_export_agree(
        queen: tuple[httpx.AsyncClient, QueenServices]) -> None:
    client, _ = queen
    verdict = (await client.get("/v1/admin/audit/verify")).json()
    assert verdict["ok"] and verdict["entries"] == 6 and verdict["problem"] is None
    r = await client.get("/v1/admin/audit/export")
    assert r.headers["content-type"] == "application/x-ndjson"
    offline = verify_export(r.text.splitlines(keepends=True))
    assert offline.ok and offline.head_hash == verdict["head"]["hash"]


async def test_an_unknown_query_value_is_an_envelope(
        queen: tuple[httpx.AsyncClient, QueenServices]) -> None:
    client, _ = queen
    r = await client.get("/v1/admin/audit", params={"limit": "many"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "limit"
