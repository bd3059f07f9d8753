"""One key check in front of every queen route: no route can forget it."""

from __future__ import annotations

from pathlib import Path

import httpx

from rbee.queen.app import OPEN_PATHS, create_app
from rbee.queen.dashboard import routes as dashboard
from rbee.queen.settings import QueenSettings

TOKEN = "t0ken-for-tests"


async def test_every_route_but_the_open_ones_needs_the_token(tmp_path: Path) -> None:
    app = create_app(QueenSettings(api_token=TOKEN, state_dir=tmp_path, local_hive=False))
    # Every operation FastAPI knows, plus the plain Starlette inference routes.
    ops = [(method.upper(), path) for path, item in app.openapi()["paths"].items()
           for method in item]
    ops += [(m, r.path) for r in app.routes if getattr(r, "methods", None)
            for m in r.methods if m != "HEAD"]
    assert len(ops) > 15
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (app.router.lifespan_context(app),  # type: ignore[attr-defined]
                httpx.AsyncClient(transport=transport, base_url="http://q") as client):
        for method, template in ops:
            path = template.replace("{job_id}", "j").replace("{model}", "m")
            r = await client.request(method, path, headers={"Authorization": "Bearer no"})
            if template in OPEN_PATHS | dashboard.OPEN_PATHS or template.startswith(
                    dashboard.STATIC_PREFIX):  # the page and its files reveal nothing
                continue
            assert r.status_code == 401, (method, path)
            assert r.json()["error"]["code"] == "invalid_api_key"
        r = await client.get("/v1/models", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code != 401
