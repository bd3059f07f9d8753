"""Scripts see tenants (issue 13): the Lua policy gets the tenant, its labels and its use in
the current windows, and may refuse a request with a reason its client reads (403
policy_refused), on top of the built-in limits."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from rbee.core.errors import PolicyRefused
from rbee.scheduler.lua import LuaPolicy, ScriptFailed
from tests.unit.queen.quota_rig import MODEL, rig

FREE_TIER = """
function route(job, workers)
  log(job.tenant .. " " .. tostring(job.requests_minute) .. " " .. tostring(job.tokens_day))
  if job.labels.tier == "free" and job.requests_minute >= 2 then
    return {refuse = "the free tier gets 2 requests a minute; " .. job.tenant .. " used " ..
            job.requests_minute}
  end
  return nil
end
"""


async def test_a_script_refuses_by_tenant_label_with_its_reason(tmp_path: Path) -> None:
    async with rig(tmp_path) as queen:
        free = await queen.key("hobby", labels={"tier": "free"})
        gold = await queen.key("bigco", labels={"tier": "gold"})
        await queen.svc.scripts.save("free-tier", FREE_TIER, activate=True)
        client = queen.sdk(free["key"])
        for _ in range(2):
            await client.chat.completions.create(
                model=MODEL, max_tokens=2, messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.PermissionDeniedError) as refused:
            await client.chat.completions.create(
                model=MODEL, max_tokens=2, messages=[{"role": "user", "content": "hi"}])
        assert refused.value.code == "policy_refused"
        expected = ("refused by scheduling script 'free-tier': the free tier gets 2 "
                    "requests a minute; hobby used 2")
        assert refused.value.body["message"] == expected  # type: ignore[index]
        for _ in range(3):  # another tenant's label: the script lets it through
            r = await queen.chat(gold["key"], max_tokens=2)
            assert r.status_code == 200
        # the refusal gave back what it booked; the script is not counted as failing
        assert queen.svc.quotas.meter("key", free["id"]).active == 0
        assert queen.svc.scripts.describe("free-tier")["active"]
        assert queen.svc.dispatcher.policy.stats.failures == 0


def test_a_refusal_needs_a_reason_and_the_usage_fields_arrive() -> None:
    policy = LuaPolicy("""
function route(job, workers)
  if job.budget_left ~= nil then return {refuse = "budget left: " .. job.budget_left} end
  if job.tokens_day > 100 then return {refuse = job.tokens_day} end
  if job.tokens_day > 10 then return {refuse = "over " .. job.tokens_day} end
  return nil
end""", "t")
    workers = [{"id": "w1", "model": "m", "state": "ready"}]
    job = {"model": "m", "tenant": "t", "tokens_day": 5, "budget_left": None}
    assert policy.route(job, workers) is None
    with pytest.raises(PolicyRefused, match="over 50"):
        policy.route({**job, "tokens_day": 50}, workers)
    with pytest.raises(ScriptFailed, match="without a reason string"):
        policy.route({**job, "tokens_day": 500}, workers)
    with pytest.raises(PolicyRefused, match=r"budget left: 2\.5"):
        policy.route({**job, "budget_left": 2.5}, workers)
