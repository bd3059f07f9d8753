"""A queen behind a reverse proxy (real daemons, uvicorn's proxy-headers middleware): with
the proxy named in `trusted_proxies`, each forwarded client is itself (its own login
throttle, its own address in the audit log); without it, X-Forwarded-For is ignored, so a
client cannot forge its way past the throttle."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.daemons import rbee_env, running_queen

pytestmark = pytest.mark.e2e

TOKEN = "trusted-proxies-test-token"
GUESS = {"api_key": "rbee-abc-wrong-guess"}


def _queen(root: Path, **extra: str) -> Iterator[str]:
    env = rbee_env(root, RBEE_QUEEN_API_TOKEN=TOKEN, RBEE_QUEEN_LOCAL_HIVE="false", **extra)
    for daemon in running_queen(env):
        yield daemon.url


def _logins(http: httpx.Client, client: str, n: int) -> list[int]:
    return [http.post("/ui/login", json=GUESS, headers={"X-Forwarded-For": client}).status_code
            for _ in range(n)]


def _failures(http: httpx.Client) -> list[dict[str, Any]]:
    r = http.get("/v1/admin/audit", params={"action": "auth.failure", "limit": 100},
                 headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


def test_behind_a_trusted_proxy_each_forwarded_client_is_itself(tmp_path: Path) -> None:
    for url in _queen(tmp_path, RBEE_QUEEN_TRUSTED_PROXIES=json.dumps(["127.0.0.0/8"])):
        with httpx.Client(base_url=url, timeout=30) as http:
            assert _logins(http, "203.0.113.7", 11) == [401] * 10 + [429]
            # Another client behind the same proxy still may try.
            assert _logins(http, "203.0.113.8", 1) == [401]
            addresses = {json.dumps(e) for e in _failures(http)}
            assert any("203.0.113.7" in a for a in addresses)
            assert any("203.0.113.8" in a for a in addresses)
            # TLS ends at the proxy: its X-Forwarded-Proto makes the session cookie Secure.
            ok = http.post("/ui/login", json={"api_key": TOKEN}, headers={
                "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"})
            assert ok.status_code == 200 and "secure" in ok.headers["set-cookie"].lower()


def test_without_trusted_proxies_forwarded_headers_are_ignored(tmp_path: Path) -> None:
    for url in _queen(tmp_path):
        with httpx.Client(base_url=url, timeout=30) as http:
            # A forged scheme is ignored too: plain http, no Secure cookie.
            ok = http.post("/ui/login", json={"api_key": TOKEN},
                           headers={"X-Forwarded-Proto": "https"})
            assert ok.status_code == 200 and "secure" not in ok.headers["set-cookie"].lower()
            # Ten "different" clients, all really this one: the eleventh is throttled.
            codes = [_logins(http, f"198.51.100.{n}", 1)[0] for n in range(11)]
            assert codes == [401] * 10 + [429]
            assert not any("198.51.100" in json.dumps(e) for e in _failures(http))


def test_a_malformed_trusted_proxy_is_a_one_line_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = rbee_env(tmp_path, RBEE_QUEEN_API_TOKEN=TOKEN, RBEE_QUEEN_LOCAL_HIVE="false",
                   RBEE_QUEEN_TRUSTED_PROXIES='["*"]')
    done = subprocess.run([sys.executable, "-m", "rbee.queen"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "queen-rbee: bad setting --trusted-proxies / RBEE_QUEEN_TRUSTED_PROXIES (item 0): "
        "value is not a valid IPv4 or IPv6 network"), done.stderr
