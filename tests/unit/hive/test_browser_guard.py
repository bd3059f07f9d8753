"""A hive answers no web page: a foreign Origin, or a rebound Host when it has no token."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from rbee.hive.app import create_app
from rbee.hive.server import build_services
from rbee.hive.settings import HiveSettings


@pytest.mark.parametrize("token", [None, "t0ken"])
async def test_a_web_page_cannot_drive_a_hive(tmp_path: Path, token: str | None) -> None:
    settings = HiveSettings(home=tmp_path, token=token)
    app = create_app(build_services(settings))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:7835") as c:
        evil = await c.post("/v1/workers", json={"model": "rbee-fake"},
                            headers={"Origin": "http://evil.example"})
        assert evil.status_code == 403 and evil.json()["error"]["code"] == "origin_not_allowed"
        rebound = await c.get("/health", headers={"Host": "evil.example:7835"})
        # With a token a rebound page still cannot act (it has no token); without one, the
        # name itself is refused.
        assert rebound.status_code == (200 if token else 403)
        assert (await c.get("/health")).status_code == 200
