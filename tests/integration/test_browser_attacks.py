"""A web page cannot drive a queen (issue 10): a foreign Origin and a DNS-rebound Host are
refused by a real queen, while curl-like clients, the OpenAI SDK and the rbee CLI work and
an origin the operator allowed gets CORS."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.daemons import Daemon, rbee_env, run_cli, running_queen

pytestmark = pytest.mark.e2e

EVIL = "http://evil.example"
UI = "http://localhost:3000"
TOKEN = "browser-test-token"
JOB = {"operation": "infer", "model": "rbee-fake", "prompt": "hi", "max_tokens": 2}


@pytest.fixture(scope="module")
def default_queen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """The loopback default: no token, no allowed origins."""
    yield from running_queen(rbee_env(tmp_path_factory.mktemp("rbee")))


@pytest.fixture
def http(default_queen: Daemon) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=default_queen.url, timeout=60) as client:
        yield client


def _job_ids(http: httpx.Client) -> set[str]:
    r = http.get("/v1/jobs", params={"limit": 200})
    assert r.status_code == 200, r.text
    return {j["job_id"] for j in r.json()["data"]}


def _refused(r: httpx.Response, code: str) -> None:
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == code
    assert "access-control-allow-origin" not in r.headers


def test_a_foreign_page_cannot_create_a_job(http: httpx.Client) -> None:
    before = _job_ids(http)
    _refused(http.post("/v1/jobs", json=JOB, headers={"Origin": EVIL}), "origin_not_allowed")
    # A form post or fetch without a JSON content type is refused the same way.
    _refused(http.post("/v1/jobs", content=json.dumps(JOB),
                       headers={"Origin": EVIL, "Content-Type": "text/plain"}),
             "origin_not_allowed")
    _refused(http.options("/v1/jobs", headers={"Origin": EVIL,
                                               "Access-Control-Request-Method": "POST"}),
             "origin_not_allowed")
    assert _job_ids(http) == before


def test_a_dns_rebound_host_is_refused(http: httpx.Client, default_queen: Daemon) -> None:
    port = httpx.URL(default_queen.url).port
    before = _job_ids(http)
    rebound = {"Host": f"evil.example:{port}"}
    _refused(http.post("/v1/jobs", json=JOB, headers=rebound), "host_not_allowed")
    # The rebound page is same-origin with itself: its Origin does not help it.
    _refused(http.post("/v1/jobs", json=JOB,
                       headers={**rebound, "Origin": f"http://evil.example:{port}"}),
             "host_not_allowed")
    _refused(http.get("/health", headers=rebound), "host_not_allowed")
    assert _job_ids(http) == before


def test_loopback_clients_without_origin_still_work(http: httpx.Client,
                                                    default_queen: Daemon) -> None:
    port = httpx.URL(default_queen.url).port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        r = http.post("/v1/jobs", json=JOB, headers={"Host": host})
        assert r.status_code == 200, r.text
        assert r.json()["job_id"] in _job_ids(http)


def test_the_openai_sdk_and_the_cli_still_work(default_queen: Daemon) -> None:
    client = openai.OpenAI(base_url=f"{default_queen.url}/v1", api_key="unused", max_retries=0)
    answer = client.chat.completions.create(
        model="rbee-fake", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
    assert answer.usage is not None and answer.usage.completion_tokens == 3
    client.close()
    r = run_cli(default_queen.env, "--json", "infer", "hello", "-m", "rbee-fake",
                "--max-tokens", "2")
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["text"].split()) == 2


def test_an_allowed_origin_gets_cors_and_still_needs_the_token(tmp_path: Path) -> None:
    env = rbee_env(tmp_path, RBEE_QUEEN_ALLOWED_ORIGINS=json.dumps([UI]),
                   RBEE_QUEEN_API_TOKEN=TOKEN)
    with contextlib.contextmanager(running_queen)(env) as queen, \
            httpx.Client(base_url=queen.url, timeout=60) as http:
        pre = http.options("/v1/jobs", headers={
            "Origin": UI, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        assert pre.status_code == 200, pre.text
        assert pre.headers["access-control-allow-origin"] == UI
        assert "POST" in pre.headers["access-control-allow-methods"]
        assert pre.headers["access-control-allow-headers"] == "authorization, content-type"
        assert int(pre.headers["access-control-max-age"]) > 0

        r = http.post("/v1/jobs", json=JOB, headers={"Origin": UI})
        assert r.status_code == 401 and r.headers["access-control-allow-origin"] == UI
        auth = {"Origin": UI, "Authorization": f"Bearer {TOKEN}"}
        r = http.post("/v1/jobs", json=JOB, headers=auth)
        assert r.status_code == 200, r.text
        assert r.headers["access-control-allow-origin"] == UI
        r = http.get(f"/v1/jobs/{r.json()['job_id']}", headers=auth)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == UI

        _refused(http.post("/v1/jobs", json=JOB, headers={**auth, "Origin": EVIL}),
                 "origin_not_allowed")
