"""Who may scrape /metrics: operator and admin keys, the scrape token (that path only), or
anyone on a loopback queen that says so; hostile credentials get an OpenAI envelope."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from rbee.queen.app import create_app
from rbee.queen.request_metrics import RequestMetrics
from rbee.queen.scrape_auth import is_scrape_token, refuse_open_metrics
from rbee.queen.settings import QueenSettings
from tests.unit.queen.quota_rig import BOOT, rig

SCRAPE = "scrape-token-for-tests-0123456789"


async def test_keys_by_role_and_the_scrape_token(tmp_path: Path) -> None:
    async with rig(tmp_path, metrics_token=SCRAPE) as r:
        user = (await r.key("acme"))["key"]
        operator = (await r.key("acme", role="operator"))["key"]
        assert (await r.http.get("/metrics")).status_code == 401
        refused = await r.as_(user, "GET", "/metrics")
        assert refused.status_code == 403
        assert refused.json()["error"]["type"] == "permission_error"
        for credential in (operator, BOOT, SCRAPE):
            got = await r.as_(credential, "GET", "/metrics")
            assert got.status_code == 200 and "rbee_requests_total" in got.text
        # The scrape token opens /metrics and nothing else.
        assert (await r.as_(SCRAPE, "GET", "/v1/models")).status_code == 401
        assert (await r.as_(SCRAPE, "GET", "/v1/workers")).status_code == 401


@pytest.mark.parametrize("header", [
    "Bearer ", "Basic c2NyYXBlOnRva2Vu", "Bearer " + "A" * 100_000, "bearer\ttoken",
    "Bearer scrape-token-for-tests-012345678", "Bearer rbee-deadbeef-secret",
    "Bearer \u00e9\u00e8", SCRAPE])
async def test_hostile_credentials_get_an_envelope(tmp_path: Path, header: str) -> None:
    async with rig(tmp_path, metrics_token=SCRAPE) as r:
        got = await r.http.get("/metrics", headers={"Authorization": header.encode()})
        assert got.status_code == 401
        error = got.json()["error"]
        assert error["type"] == "authentication_error" and error["code"] == "invalid_api_key"
        assert SCRAPE not in got.text and "A" * 100 not in got.text


async def test_other_methods_and_odd_requests(tmp_path: Path) -> None:
    async with rig(tmp_path, metrics_token=SCRAPE) as r:
        auth = {"Authorization": f"Bearer {SCRAPE}"}
        posted = await r.http.post("/metrics", headers=auth, content=b"x" * 10_000)
        assert posted.status_code == 405 and "error" in posted.json()
        queried = await r.http.get("/metrics?name[]=rbee_workers&format=%00", headers=auth)
        assert queried.status_code == 200  # the query is ignored, as Prometheus expects


def test_the_scrape_token_is_compared_whole() -> None:
    assert is_scrape_token(f"Bearer {SCRAPE}", SCRAPE)
    assert is_scrape_token(f"bearer  {SCRAPE} ", SCRAPE)
    assert not is_scrape_token(f"Bearer {SCRAPE}x", SCRAPE)
    assert not is_scrape_token(f"Bearer {SCRAPE[:-1]}", SCRAPE)
    assert not is_scrape_token(SCRAPE, SCRAPE)  # not a bearer header
    assert not is_scrape_token(f"Bearer {SCRAPE}", None)  # no token configured
    assert not is_scrape_token(None, SCRAPE)


async def test_public_metrics_on_loopback_need_no_key(tmp_path: Path) -> None:
    async with rig(tmp_path, metrics_public=True) as r:
        assert (await r.http.get("/metrics")).status_code == 200
        assert (await r.http.get("/v1/models")).status_code == 401  # only /metrics is open


def test_public_metrics_are_refused_off_loopback() -> None:
    with pytest.raises(SystemExit, match="refusing to serve /metrics without auth"):
        refuse_open_metrics(QueenSettings(host="0.0.0.0", api_token="t", metrics_public=True))
    refuse_open_metrics(QueenSettings(host="127.0.0.1", metrics_public=True))
    refuse_open_metrics(QueenSettings(host="0.0.0.0", api_token="t", metrics_token=SCRAPE))
    refuse_open_metrics(QueenSettings(host="0.0.0.0", api_token="t", metrics=False,
                                      metrics_public=True))  # nothing served: nothing open


def test_the_server_refuses_before_it_starts_anything() -> None:
    from rbee.queen import server

    with pytest.raises(SystemExit, match=r"without auth on 0\.0\.0\.0"):
        server.main(["--host", "0.0.0.0", "--api-token", "t", "--metrics-public"])


async def test_metrics_off_records_nothing_and_serves_404(tmp_path: Path) -> None:
    settings = QueenSettings(api_token=BOOT, state_dir=tmp_path, local_hive=False,
                             metrics=False)
    app = create_app(settings)
    assert not any(m.cls is RequestMetrics for m in app.user_middleware)  # type: ignore[attr-defined]
    async with (app.router.lifespan_context(app),  # type: ignore[attr-defined]
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                  base_url="http://q") as client):
        assert app.state.services.metrics is None  # type: ignore[attr-defined]
        got = await client.get("/metrics", headers={"Authorization": f"Bearer {BOOT}"})
        assert got.status_code == 404 and "error" in got.json()


def test_the_scrape_token_never_reaches_children() -> None:
    from rbee.core.child_env import hive_env, worker_env

    base = {"RBEE_QUEEN_METRICS_TOKEN": SCRAPE, "PATH": "/bin"}
    assert "RBEE_QUEEN_METRICS_TOKEN" not in hive_env("h", "w", base)
    assert "RBEE_QUEEN_METRICS_TOKEN" not in worker_env("w", base)


def test_an_empty_or_short_scrape_token_is_refused_and_opens_nothing() -> None:
    """`RBEE_QUEEN_METRICS_TOKEN=$(cat file)` with a file the queen cannot read is empty: that
    must not make every `Bearer <blank>` a scraper."""
    from pydantic import ValidationError

    from rbee.queen.scrape_auth import is_scrape_token

    for weak in ("", "short"):
        with pytest.raises(ValidationError):
            QueenSettings(metrics_token=weak)
    assert not is_scrape_token("Bearer \xa0", "")
    assert not is_scrape_token("Bearer ", "")
    assert not is_scrape_token("Bearer  ", SCRAPE)
    assert is_scrape_token(f"Bearer {SCRAPE}", SCRAPE)
