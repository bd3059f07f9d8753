"""Quotas and rate limits (issue 13): the worst case is booked atomically before dispatch and
settled from the fake engine's own counts; 429s carry Retry-After and OpenAI's x-ratelimit-*
headers through the official SDK; limits an admin sets hold for the next request."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest

from rbee.queen.metering import prompt_tokens
from tests.unit.queen.quota_rig import BOOT, MODEL, Rig, rig

BODY = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hello there"}],
                   "max_tokens": 5}).encode()
DEMAND = prompt_tokens(len(BODY)) + 5  # what one such request books


@pytest.fixture
async def queen(tmp_path: Path) -> AsyncIterator[Rig]:
    async with rig(tmp_path) as r:
        yield r


async def _post(queen: Rig, key: str) -> httpx.Response:
    return await queen.as_(key, "POST", "/v1/chat/completions", content=BODY,
                           headers={"Content-Type": "application/json"})


async def _flood(queen: Rig, key: str, n: int, refused: int) -> list[httpx.Response]:
    """`n` requests at once while the engine is held: the refused ones answer at once, then
    the held ones are let go."""
    queen.engine.gate.clear()
    tasks = [asyncio.create_task(_post(queen, key)) for _ in range(n)]
    for _ in range(2000):
        if sum(t.done() for t in tasks) >= refused:
            break
        await asyncio.sleep(0.005)
    for _ in range(1000):  # the admitted ones reach the engine (a loaded machine: slowly)
        if queen.engine.waiting >= n - refused:
            break
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)  # had more been admitted, they would be waiting by now
    held = queen.engine.waiting
    queen.engine.gate.set()
    answers = await asyncio.gather(*tasks)
    assert held == n - refused  # the admitted ones were in the engine at the same time
    return answers


async def test_100_concurrent_requests_against_a_concurrency_limit_of_10(queen: Rig) -> None:
    made = await queen.key("acme")
    await queen.admin("PUT", f"/keys/{made['id']}/limits", json={"concurrent_requests": 10})
    answers = await _flood(queen, made["key"], 100, refused=90)
    codes = [a.status_code for a in answers]
    assert codes.count(200) == 10 and codes.count(429) == 90
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json()["error"]["code"] == "concurrency_limit_exceeded"
    assert "10 at a time" in refused.json()["error"]["message"]
    assert queen.svc.quotas.meter("key", made["id"]).active == 0  # every slot given back


async def test_100_concurrent_requests_against_tokens_per_minute_for_10(queen: Rig) -> None:
    made = await queen.key("acme")
    # room for 10 worst cases and half of an 11th
    await queen.admin("PUT", "/tenants/acme/limits",
                      json={"tokens_per_minute": 10 * DEMAND + DEMAND // 2})
    answers = await _flood(queen, made["key"], 100, refused=90)
    codes = [a.status_code for a in answers]
    assert codes.count(200) == 10 and codes.count(429) == 90
    error = next(a for a in answers if a.status_code == 429).json()["error"]
    assert error["code"] == "rate_limit_exceeded" and "tokens per minute" in error["message"]
    # settled: the engine's counts replaced the worst cases
    used = sum(a.json()["usage"]["total_tokens"] for a in answers if a.status_code == 200)
    assert queen.svc.quotas.meter("tenant", made["tenant_id"]).tokens == used < 10 * DEMAND


async def test_requests_per_minute_exactly_under_concurrency(queen: Rig) -> None:
    made = await queen.key("acme")
    await queen.admin("PUT", f"/keys/{made['id']}/limits", json={"requests_per_minute": 10})
    answers = await asyncio.gather(*(_post(queen, made["key"]) for _ in range(100)))
    assert [a.status_code for a in answers].count(200) == 10


async def test_the_sdk_sees_429_with_retry_after_and_rate_limit_headers(queen: Rig) -> None:
    made = await queen.key("acme")
    await queen.admin("PUT", f"/keys/{made['id']}/limits",
                      json={"requests_per_minute": 2, "tokens_per_minute": 1000})
    client = queen.sdk(made["key"])
    queen.advance(15)  # 45 s left in this minute
    raw = await client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=3)
    assert raw.headers["x-ratelimit-limit-requests"] == "2"
    assert raw.headers["x-ratelimit-remaining-requests"] == "1"
    assert raw.headers["x-ratelimit-reset-requests"] == "45s"
    assert raw.headers["x-ratelimit-limit-tokens"] == "1000"
    assert int(raw.headers["x-ratelimit-remaining-tokens"]) < 1000
    answer = raw.parse()
    await client.chat.completions.create(model=MODEL, max_tokens=3,
                                         messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.RateLimitError) as refused:
        await client.chat.completions.create(model=MODEL, max_tokens=3,
                                             messages=[{"role": "user", "content": "hi"}])
    headers = refused.value.response.headers
    assert headers["retry-after"] == "45"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.value.code == "rate_limit_exceeded"
    assert "2 requests this minute" in refused.value.message
    assert answer.usage is not None
    queen.advance(45)  # the next minute: room again
    again = await client.chat.completions.create(model=MODEL, max_tokens=3,
                                                 messages=[{"role": "user", "content": "hi"}])
    assert again.choices[0].message.content


async def test_a_request_bigger_than_the_limit_names_max_tokens(queen: Rig) -> None:
    made = await queen.key("acme")
    await queen.admin("PUT", f"/keys/{made['id']}/limits", json={"tokens_per_minute": 100})
    r = await queen.chat(made["key"], max_tokens=500)
    assert r.status_code == 429 and r.json()["error"]["param"] == "max_tokens"
    assert "lower max_tokens" in r.json()["error"]["message"]


async def test_settlement_is_exact_against_the_engine_counts(queen: Rig) -> None:
    made = await queen.key("acme")
    await queen.admin("PUT", f"/keys/{made['id']}/limits", json={"tokens_per_day": 10_000})
    client = queen.sdk(made["key"])
    whole = await client.chat.completions.create(
        model=MODEL, max_tokens=7, messages=[{"role": "user", "content": "one two three"}])
    completion = await client.completions.create(model=MODEL, prompt="a b c d", max_tokens=4)
    chunks = [c async for c in await client.chat.completions.create(
        model=MODEL, max_tokens=6, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "four five"}])]
    streamed = chunks[-1].usage
    assert whole.usage and completion.usage and streamed
    expected = (whole.usage.total_tokens + completion.usage.total_tokens
                + streamed.total_tokens)
    assert queen.svc.quotas.meter("key", made["id"]).day_tokens == expected
    rows = (await queen.as_(made["key"], "GET", "/v1/usage")).json()["data"]
    assert len(rows) == 1 and rows[0]["requests"] == 3
    assert rows[0]["prompt_tokens"] == (whole.usage.prompt_tokens + 4 + 2)
    assert rows[0]["completion_tokens"] == 7 + 4 + 6


async def test_a_stream_gets_no_usage_frame_it_did_not_ask_for_yet_is_settled(
        queen: Rig) -> None:
    made = await queen.key("acme")
    await queen.admin("PUT", f"/keys/{made['id']}/limits", json={"tokens_per_minute": 5000})
    client = queen.sdk(made["key"])
    chunks = [c async for c in await client.chat.completions.create(
        model=MODEL, max_tokens=6, stream=True,
        messages=[{"role": "user", "content": "four five"}])]
    assert all(c.usage is None for c in chunks) and chunks[-1].choices
    assert "".join(c.choices[0].delta.content or "" for c in chunks)
    assert queen.svc.quotas.meter("key", made["id"]).tokens == 2 + 6


async def test_a_stream_past_a_lowered_limit_ends_cleanly_and_the_next_is_refused(
        queen: Rig) -> None:
    """An admin lowers the limit while a stream runs: the stream is not cut (it ends with its
    [DONE] and is settled), and the next request is refused at once."""
    made = await queen.key("acme")
    await queen.admin("PUT", f"/keys/{made['id']}/limits", json={"tokens_per_minute": 1000})
    queen.engine.gate.clear()
    stream = asyncio.create_task(queen.chat(made["key"], text="a b c", max_tokens=20,
                                            stream=True))
    while queen.engine.waiting == 0:
        await asyncio.sleep(0.01)
    await queen.admin("PUT", f"/keys/{made['id']}/limits", json={"tokens_per_minute": 10})
    queen.engine.gate.set()
    answer = await stream
    assert answer.status_code == 200 and answer.text.endswith("data: [DONE]\n\n")
    assert '"error"' not in answer.text and '"usage"' not in answer.text
    assert queen.svc.quotas.meter("key", made["id"]).tokens == 3 + 20  # settled, over 10
    refused = await queen.chat(made["key"], max_tokens=1)
    assert refused.status_code == 429
    assert refused.headers["x-ratelimit-remaining-tokens"] == "0"


async def test_limits_changed_by_an_admin_hold_for_the_next_request(queen: Rig) -> None:
    made = await queen.key("acme")
    assert (await queen.chat(made["key"], max_tokens=2)).status_code == 200
    await queen.admin("PUT", "/tenants/acme/limits", json={"requests_per_minute": 1})
    assert (await queen.chat(made["key"], max_tokens=2)).status_code == 429
    shown = await queen.admin("GET", "/tenants/acme/limits")
    assert shown["requests_per_minute"] == 1 and shown["scope"] == "tenant"
    await queen.admin("PUT", "/tenants/acme/limits", json={})  # no limits: removed
    assert (await queen.chat(made["key"], max_tokens=2)).status_code == 200
    assert (await queen.admin("GET", "/limits"))["data"] == []


async def test_the_budget_counts_cost_at_the_admin_prices(queen: Rig) -> None:
    made = await queen.key("acme")
    priced = await queen.admin("PUT", f"/prices/{MODEL}",
                               json={"input_tokens": 0.5, "output_tokens": 2})
    assert priced == {"model": MODEL, "input_tokens": 0.5, "output_tokens": 2.0,
                      "audio_seconds": 0.0, "images": 0.0, "video_seconds": 0.0}
    await queen.admin("PUT", "/tenants/acme/limits", json={"budget": 100})
    first = await queen.chat(made["key"], text="one two", max_tokens=10)
    assert first.status_code == 200
    cost = 2 * 0.5 + 10 * 2
    assert queen.svc.quotas.meter("tenant", made["tenant_id"]).month_cost == cost
    # a worst case of 500 output tokens would cost 1000 > the 79 left
    r = await queen.chat(made["key"], max_tokens=500)
    assert r.status_code == 429 and r.json()["error"]["code"] == "quota_exceeded"
    assert "monthly budget" in r.json()["error"]["message"]
    rows = (await queen.as_(BOOT, "GET", "/v1/usage")).json()["data"]
    assert rows[0]["cost"] == cost


async def test_a_model_without_prices_costs_nothing(queen: Rig) -> None:
    made = await queen.key("acme")
    await queen.admin("PUT", "/tenants/acme/limits", json={"budget": 0})
    assert (await queen.chat(made["key"], max_tokens=3)).status_code == 200
    await queen.admin("PUT", f"/prices/{MODEL}", json={"output_tokens": 1})
    assert (await queen.chat(made["key"], max_tokens=3)).status_code == 429
    await queen.admin("DELETE", f"/prices/{MODEL}")
    assert (await queen.chat(made["key"], max_tokens=3)).status_code == 200
    gone = await queen.as_(BOOT, "DELETE", f"/v1/admin/prices/{MODEL}")
    assert gone.status_code == 404 and gone.json()["error"]["param"] == "model"


async def test_a_user_key_cannot_set_limits_or_prices(queen: Rig) -> None:
    made = await queen.key("acme")
    for path, body in ((f"/v1/admin/keys/{made['id']}/limits", {"requests_per_minute": 99}),
                       ("/v1/admin/tenants/acme/limits", {"requests_per_minute": 99}),
                       (f"/v1/admin/prices/{MODEL}", {"output_tokens": 0})):
        r = await queen.as_(made["key"], "PUT", path, json=body)
        assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"


@pytest.mark.parametrize(("body", "param"), [
    ({"requests_per_minute": -1}, "requests_per_minute"),
    ({"tokens_per_day": "lots"}, "tokens_per_day"),
    ({"budget": 1e300}, "budget"),
    ({"rpm": 3}, "rpm"),
])
async def test_bad_limits_are_a_400_naming_the_field(queen: Rig, body: object,
                                                     param: str) -> None:
    await queen.key("acme")
    r = await queen.as_(BOOT, "PUT", "/v1/admin/tenants/acme/limits", json=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    assert (await queen.admin("GET", "/limits"))["data"] == []


async def test_limits_of_what_does_not_exist_are_404(queen: Rig) -> None:
    for path, param in (("/v1/admin/tenants/nobody/limits", "tenant"),
                        ("/v1/admin/keys/nokey/limits", "key_id")):
        r = await queen.as_(BOOT, "PUT", path, json={"requests_per_minute": 1})
        assert r.status_code == 404 and r.json()["error"]["param"] == param
    r = await queen.as_(BOOT, "PUT", "/v1/admin/tenants/x/limits", content=b"{not json",
                        headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 404)


async def test_a_request_the_worker_refuses_books_nothing(queen: Rig) -> None:
    """n=9 passes the queen's schema but not the worker's limit of 8 choices: its 400 gives
    the worst case back (9 × 5 tokens were booked)."""
    made = await queen.key("acme")
    await queen.admin("PUT", f"/keys/{made['id']}/limits", json={"tokens_per_minute": 1000})
    r = await queen.chat(made["key"], max_tokens=5, n=9)
    assert r.status_code == 400 and r.json()["error"]["param"] == "n", r.text
    meter = queen.svc.quotas.meter("key", made["id"])
    assert meter.tokens == 0 and meter.active == 0 and meter.requests == 1


async def test_inference_jobs_book_and_settle_like_requests(queen: Rig) -> None:
    made = await queen.key("acme")
    await queen.admin("PUT", f"/keys/{made['id']}/limits",
                      json={"requests_per_minute": 2, "tokens_per_day": 10_000})
    job = await queen.as_(made["key"], "POST", "/v1/jobs", json={
        "operation": "infer", "model": MODEL, "prompt": "one two three", "max_tokens": 4})
    assert job.status_code == 200, job.text
    job_id = job.json()["job_id"]
    for _ in range(500):
        summary = (await queen.as_(made["key"], "GET", f"/v1/jobs/{job_id}")).json()
        if summary["state"] in ("done", "failed", "cancelled"):
            break
        await asyncio.sleep(0.01)
    assert summary["state"] == "done", summary
    meter = queen.svc.quotas.meter("key", made["id"])
    assert meter.day_tokens == 3 + 4 and meter.active == 0  # the engine's counts
    embed = await queen.as_(made["key"], "POST", "/v1/jobs", json={
        "operation": "embed", "model": "rbee-fake-embedding", "input": "x"})
    assert embed.status_code == 200  # the second request this minute
    refused = await queen.as_(made["key"], "POST", "/v1/jobs", json={
        "operation": "infer", "model": MODEL, "prompt": "again"})
    assert refused.status_code == 429 and refused.headers["retry-after"] == "60"
    status = await queen.as_(made["key"], "POST", "/v1/jobs", json={"operation": "status"})
    assert status.status_code == 200  # not inference: no quota


async def test_responses_book_and_settle_like_chat(queen: Rig) -> None:
    made = await queen.key("acme")
    await queen.admin("PUT", f"/keys/{made['id']}/limits",
                      json={"requests_per_minute": 2, "tokens_per_day": 10_000})
    client = queen.sdk(made["key"])
    whole = await client.responses.create(model=MODEL, input="one two", max_output_tokens=5)
    events = [e async for e in await client.responses.create(
        model=MODEL, input="three four five", max_output_tokens=6, stream=True)]
    streamed = events[-1].response.usage  # type: ignore[union-attr]
    assert whole.usage is not None and streamed is not None
    meter = queen.svc.quotas.meter("key", made["id"])
    assert meter.day_tokens == whole.usage.total_tokens + streamed.total_tokens
    assert meter.active == 0
    with pytest.raises(openai.RateLimitError):
        await client.responses.create(model=MODEL, input="again", max_output_tokens=5)


async def test_a_cancelled_job_gives_its_booking_back(queen: Rig) -> None:
    made = await queen.key("acme")
    await queen.admin("PUT", f"/keys/{made['id']}/limits",
                      json={"tokens_per_minute": 10_000, "concurrent_requests": 1})
    queen.engine.gate.clear()
    job = await queen.as_(made["key"], "POST", "/v1/jobs", json={
        "operation": "infer", "model": MODEL, "prompt": "one two", "max_tokens": 50})
    job_id = job.json()["job_id"]
    meter = queen.svc.quotas.meter("key", made["id"])
    assert meter.active == 1 and meter.tokens > 50  # booked at submission
    second = await queen.as_(made["key"], "POST", "/v1/jobs", json={
        "operation": "infer", "model": MODEL, "prompt": "x"})
    assert second.status_code == 429  # one at a time
    while queen.engine.waiting == 0:
        await asyncio.sleep(0.01)
    cancelled = await queen.as_(made["key"], "DELETE", f"/v1/jobs/{job_id}")
    queen.engine.gate.set()
    assert cancelled.json()["state"] == "cancelled"
    assert (meter.active, meter.tokens) == (0, 0)
