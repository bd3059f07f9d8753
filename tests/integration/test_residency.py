"""Data residency through real daemons (issue 13): one queen, a hive in the EU and one in the
US (two rbee-hive processes with --region); a tenant bound to the EU is served there only,
and when the EU hive is gone it gets an explicit 503, never the US hive."""

from __future__ import annotations

import time
from pathlib import Path

import openai
import pytest

from rbee.client import QueenClient
from tests.support.hives import running_cluster

pytestmark = pytest.mark.e2e
BOOT = "bootstrap-token-for-residency"


def _key(admin: QueenClient, tenant: str, regions: list[str] | None) -> str:
    admin.admin("POST", "/tenants", {"name": tenant, "regions": regions})
    user = admin.admin("POST", "/users", {"tenant": tenant, "name": "ann"})
    key: str = admin.admin("POST", "/keys", {"user": user["id"]})["key"]
    return key


def test_an_eu_tenant_runs_in_the_eu_only(tmp_path: Path) -> None:
    hives = {"eu1": ("--region", "eu"), "us1": ("--region", "us")}
    with running_cluster(tmp_path, hives, RBEE_QUEEN_API_TOKEN=BOOT,
                         RBEE_API_TOKEN=BOOT) as cluster:
        admin = cluster.client
        us_worker = admin.run("worker_spawn", model="rbee-fake", hive_id="us1")["worker"]
        eu_key, any_key = _key(admin, "acme", ["eu"]), _key(admin, "globex", None)
        with QueenClient(cluster.queen.url, eu_key) as acme, \
                QueenClient(cluster.queen.url, any_key) as globex:
            for _ in range(3):
                served = acme.run("infer", model="rbee-fake", prompt="hi", max_tokens=2)
                hive = {w["id"]: w["hive_id"] for w in admin.run("worker_list")["workers"]}
                assert hive[served["worker_id"]] == "eu1", served
            assert globex.run("infer", model="rbee-fake", prompt="hi",
                              max_tokens=2)["worker_id"] == us_worker["id"]

            cluster.hives["eu1"].kill_with_workers()
            deadline = time.monotonic() + 10
            while {h["id"]: h["state"] for h in admin.run("hive_list")["hives"]}["eu1"] != "down":
                assert time.monotonic() < deadline
                time.sleep(0.1)
            sdk = openai.OpenAI(base_url=f"{cluster.queen.url}/v1", api_key=eu_key,
                                max_retries=0, timeout=30)
            with pytest.raises(openai.InternalServerError) as refused:
                sdk.chat.completions.create(model="rbee-fake", max_tokens=2,
                                            messages=[{"role": "user", "content": "hi"}])
            assert refused.value.status_code == 503
            body = refused.value.body
            assert isinstance(body, dict) and body["code"] == "no_region_capacity", body
            assert "eu" in body["message"]
            # the other tenant is still served, in the US
            assert globex.run("infer", model="rbee-fake", prompt="hi",
                              max_tokens=2)["worker_id"] == us_worker["id"]
