"""A real Prometheus (the Debian package) scrapes a real queen, hive and fake-engine workers
with the scrape token from a file (deploy/prometheus.yml); after traffic (chat, a stream,
embeddings, a refused request, a tenant's), every query of the Grafana board returns data."""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from openai import OpenAI, RateLimitError

from tests.support.daemons import Daemon, free_port, rbee_env, running_queen
from tests.support.grafana import BOARD, queries

pytestmark = pytest.mark.e2e
BOOT = "bootstrap-token-for-the-metrics-e2e"
SCRAPE = "scrape-token-for-the-metrics-e2e"


@dataclass
class Prometheus:
    url: str
    proc: subprocess.Popen[bytes]

    def query(self, expr: str) -> list[dict[str, Any]]:
        got = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = got.json()
        assert got.status_code == 200 and body["status"] == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_up(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "prometheus exited"
            try:
                targets = httpx.get(f"{self.url}/api/v1/targets", timeout=2).json()
                active = targets["data"]["activeTargets"]
                if active and all(t["health"] == "up" for t in active):
                    return
            except (httpx.TransportError, ValueError, KeyError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"the queen's target is not up in Prometheus: {active}")


@pytest.fixture
def queen(tmp_path: Path) -> Iterator[Daemon]:
    env = rbee_env(tmp_path, RBEE_QUEEN_API_TOKEN=BOOT, RBEE_QUEEN_METRICS_TOKEN=SCRAPE)
    yield from running_queen(env)


@pytest.fixture
def prometheus(queen: Daemon, tmp_path: Path) -> Iterator[Prometheus]:
    """deploy/prometheus.yml, pointed at this queen, a 1 s interval and a token file."""
    config = yaml.safe_load((BOARD.parents[1] / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = config["global"]["evaluation_interval"] = "1s"
    job = config["scrape_configs"][0]
    job["static_configs"][0]["targets"] = [queen.url.removeprefix("http://")]
    token = tmp_path / "scrape-token"
    token.write_text(SCRAPE + "\n")
    token.chmod(0o600)
    job["authorization"]["credentials_file"] = str(token)
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    with (tmp_path / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(
            ["prometheus", f"--config.file={config_file}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        yield Prometheus(f"http://127.0.0.1:{port}", proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tenant_key(queen: Daemon, requests_per_minute: int) -> str:
    """A tenant's user key, its tenant limited to `requests_per_minute`."""
    with httpx.Client(base_url=f"{queen.url}/v1/admin", timeout=30,
                      headers={"Authorization": f"Bearer {BOOT}"}) as admin:
        assert admin.post("/tenants", json={"name": "acme"}).status_code == 200
        user = admin.post("/users", json={"tenant": "acme", "name": "ann"}).json()
        key = admin.post("/keys", json={"user": user["id"]}).json()
        limits = admin.put("/tenants/acme/limits",
                           json={"requests_per_minute": requests_per_minute})
        assert limits.status_code == 200, limits.text
        return str(key["key"])


def traffic(queen: Daemon, key: str) -> None:
    messages = [{"role": "user", "content": "hello metrics"}]
    with (OpenAI(base_url=f"{queen.url}/v1", api_key=BOOT, max_retries=0) as admin,
          OpenAI(base_url=f"{queen.url}/v1", api_key=key, max_retries=0) as tenant):
        for client in (admin, tenant):
            answer = client.chat.completions.create(model="rbee-fake", messages=messages,
                                                    max_tokens=8)
            assert answer.usage is not None and answer.usage.completion_tokens == 8
            chunks = list(client.chat.completions.create(
                model="rbee-fake", messages=messages, max_tokens=16, stream=True,
                stream_options={"include_usage": True}))
            assert chunks[-1].usage is not None
        embedded = admin.embeddings.create(model="rbee-fake-embedding", input=["a", "b"])
        assert len(embedded.data) == 2
        with pytest.raises(RateLimitError):  # the tenant's third request this minute
            tenant.chat.completions.create(model="rbee-fake", messages=messages, max_tokens=2)


def test_scrape_auth(queen: Daemon) -> None:
    user = tenant_key(queen, requests_per_minute=100)
    assert httpx.get(f"{queen.url}/metrics").status_code == 401
    with_user = httpx.get(f"{queen.url}/metrics", headers={"Authorization": f"Bearer {user}"})
    assert with_user.status_code == 403
    scraped = httpx.get(f"{queen.url}/metrics", headers={"Authorization": f"Bearer {SCRAPE}"})
    assert scraped.status_code == 200 and "rbee_hive_up" in scraped.text


def test_every_grafana_panel_query_returns_data(queen: Daemon, prometheus: Prometheus) -> None:
    prometheus.wait_up()
    key = tenant_key(queen, requests_per_minute=2)
    traffic(queen, key)
    # A few scrapes after the traffic: each rate window holds the increase.
    deadline = time.monotonic() + 30
    while not prometheus.query('rbee_admission_rejections_total{reason="rate_limit_exceeded"}'):
        assert time.monotonic() < deadline, "the refusal never reached Prometheus"
        time.sleep(0.5)
    # A series is born with its first observation, and rate() sees no increase from "absent":
    # once Prometheus knows the stream histograms, another stream moves them.
    with OpenAI(base_url=f"{queen.url}/v1", api_key=BOOT, max_retries=0) as admin:
        assert list(admin.chat.completions.create(
            model="rbee-fake", messages=[{"role": "user", "content": "again"}], max_tokens=8,
            stream=True))
    time.sleep(3)
    has_gpu = bool(prometheus.query('rbee_device_memory_total_bytes{kind="cuda"}'))
    empty, all_nan = [], []
    for q in queries():
        result = prometheus.query(q.expr)
        if "rbee_gpu_" in q.expr and not has_gpu:
            # NVML readings exist only where NVML gives them: none on a machine without a GPU
            # (tests/unit/queen/test_metrics_collector.py shows them with readings).
            assert result == [], (q, result)
            continue
        if not result:
            empty.append(q)
        elif all(math.isnan(float(r["value"][1])) for r in result):
            all_nan.append(q)
    assert not empty, f"panels without data: {empty}"
    assert not all_nan, f"panels whose every value is NaN: {all_nan}"
    # And the values are the cluster's: the tenant's two answers, the refusal.
    tenant = prometheus.query('rbee_tenant_requests_total{tenant="acme"}')
    assert [float(r["value"][1]) for r in tenant] == [2.0]
    hives = prometheus.query("rbee_hive_up")
    assert [float(r["value"][1]) for r in hives] == [1.0]
