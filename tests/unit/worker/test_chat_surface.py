"""Tools, structured outputs, logprobs, n, penalties and bias through the worker's API
(fake engine), and the 400s for what cannot be served."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from rbee.engines.fake import FakeEngine
from rbee.worker.app import create_app
from rbee.worker.runtime import Runtime

MSG = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "unit": {"enum": ["c", "f"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}}
NOOP = {"type": "function", "function": {"name": "noop"}}
CHAT = "/v1/chat/completions"


@pytest.fixture
async def client() -> Any:
    runtime = Runtime(FakeEngine())
    await runtime.load_engine()
    app = create_app(runtime, model="m", max_n=4)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://w") as c:
        yield c


def _frames(r: httpx.Response) -> list[dict[str, Any]]:
    lines = [ln[6:] for ln in r.text.splitlines() if ln.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(ln) for ln in lines[:-1]]


async def test_a_tool_call_answer(client: httpx.AsyncClient) -> None:
    r = await client.post(CHAT, json={"model": "m", "messages": MSG, "tools": [NOOP, WEATHER],
                                      "tool_choice": {"type": "function",
                                                      "function": {"name": "get_weather"}}})
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "", "unit": "c"}
    assert choice["message"]["content"] is None
    usage = r.json()["usage"]
    assert usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_streamed_tool_call_deltas(client: httpx.AsyncClient) -> None:
    r = await client.post(CHAT, json={"model": "m", "messages": MSG, "tools": [WEATHER],
                                      "tool_choice": "required", "stream": True,
                                      "stream_options": {"include_usage": True}})
    frames = _frames(r)
    deltas = [f["choices"][0]["delta"] for f in frames if f["choices"]]
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert calls[0]["index"] == 0 and calls[0]["function"]["name"] == "get_weather"
    assert calls[0]["id"].startswith("call_") and calls[0]["type"] == "function"
    assert all("id" not in c and c["index"] == 0 for c in calls[1:])
    args = "".join(c["function"]["arguments"] for c in calls)
    assert json.loads(args) == {"city": "", "unit": "c"}
    assert frames[-2]["choices"][0]["finish_reason"] == "tool_calls"
    usage = frames[-1]["usage"]
    assert frames[-1]["choices"] == [] and usage["completion_tokens"] >= len(calls)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_an_agent_loop_ends_in_text(client: httpx.AsyncClient) -> None:
    """auto, after a tool result: the fake answers in text (as a model would)."""
    history = [*MSG, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21 C"}]
    r = await client.post(CHAT, json={"model": "m", "messages": history, "tools": [WEATHER]})
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert "tool_calls" not in choice["message"] and choice["message"]["content"]


@pytest.mark.parametrize("fmt", [
    {"type": "json_object"},
    {"type": "json_schema", "json_schema": {"name": "p", "strict": True, "schema": {
        "type": "object", "properties": {"n": {"type": "integer"}, "s": {"enum": ["x"]}},
        "required": ["n", "s"], "additionalProperties": False}}},
])
async def test_structured_output(client: httpx.AsyncClient, fmt: dict[str, Any]) -> None:
    r = await client.post(CHAT, json={"model": "m", "messages": MSG, "response_format": fmt})
    content = r.json()["choices"][0]["message"]["content"]
    assert isinstance(json.loads(content), dict)
    if fmt["type"] == "json_schema":
        assert json.loads(content) == {"n": 0, "s": "x"}


async def test_n_choices_and_their_usage(client: httpx.AsyncClient) -> None:
    body = {"model": "m", "messages": MSG, "n": 3, "max_tokens": 4, "seed": 1}
    whole = (await client.post(CHAT, json=body)).json()
    assert [c["index"] for c in whole["choices"]] == [0, 1, 2]
    texts = {c["message"]["content"] for c in whole["choices"]}
    assert len(texts) == 3  # seeds 1, 2, 3
    assert whole["usage"]["completion_tokens"] == 12
    one = (await client.post(CHAT, json={**body, "n": 1})).json()
    assert one["choices"][0]["message"]["content"] == whole["choices"][0]["message"]["content"]
    frames = _frames(await client.post(CHAT, json={**body, "stream": True, "stream_options":
                                                   {"include_usage": True}}))
    streamed = {i: "".join(f["choices"][0]["delta"].get("content") or "" for f in frames
                           if f["choices"] and f["choices"][0]["index"] == i) for i in range(3)}
    assert set(streamed.values()) == texts
    assert frames[-1]["usage"] == whole["usage"]


async def test_chat_logprobs(client: httpx.AsyncClient) -> None:
    body = {"model": "m", "messages": MSG, "max_tokens": 3, "logprobs": True, "top_logprobs": 2}
    content = (await client.post(CHAT, json=body)).json()["choices"][0]["logprobs"]["content"]
    assert len(content) == 3
    for entry in content:
        assert entry["logprob"] < 0 and bytes(entry["bytes"]).decode() == entry["token"]
        assert len(entry["top_logprobs"]) == 2
    frames = _frames(await client.post(CHAT, json={**body, "stream": True}))
    streamed = [f["choices"][0]["logprobs"] for f in frames if f["choices"][0]["delta"].get(
        "content")]
    assert [s["content"][0]["token"] for s in streamed] == [e["token"] for e in content]
    plain = (await client.post(CHAT, json={**body, "logprobs": False, "top_logprobs": None}))
    assert plain.json()["choices"][0]["logprobs"] is None


async def test_completion_logprobs(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/completions", json={"model": "m", "prompt": "x", "max_tokens": 3,
                                                   "logprobs": 2})
    lp = r.json()["choices"][0]["logprobs"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == 3
    assert lp["text_offset"][0] == 0 and lp["text_offset"][1] == len(lp["tokens"][0])
    assert "".join(lp["tokens"]) == r.json()["choices"][0]["text"]


async def test_bias_and_penalties_change_the_answer(client: httpx.AsyncClient) -> None:
    body = {"model": "m", "messages": MSG, "max_tokens": 30, "seed": 5}
    base = (await client.post(CHAT, json=body)).json()["choices"][0]["message"]["content"]
    assert "bee" in base.split()
    banned = (await client.post(CHAT, json={**body, "logit_bias": {"1": -100}})).json()
    assert "bee" not in banned["choices"][0]["message"]["content"].split()
    for field in ("presence_penalty", "frequency_penalty"):
        other = (await client.post(CHAT, json={**body, field: 1.0})).json()
        assert other["choices"][0]["message"]["content"] != base


@pytest.mark.parametrize(("extra", "param", "says"), [
    ({"n": 5}, "n", "at most 4"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs", None),
    ({"top_logprobs": 2}, "top_logprobs", "logprobs"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice", "nope"),
    ({"tool_choice": "required"}, "tool_choice", None),
    ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]},
     "tools.0.function.name", None),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer", "minimum": 1}}}}}]},
     "tools", "minimum"),
    ({"tools": [WEATHER, WEATHER]}, "tools", "two tools"),
    ({"response_format": {"type": "xml"}}, "response_format", None),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "string", "pattern": "^a$"}}}}, "response_format", "pattern"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "$defs": {"A": {"$ref": "#/$defs/A"}}, "$ref": "#/$defs/A"}}}}, "response_format",
     "finite"),
    ({"logit_bias": {"abc": 1}}, "logit_bias", None),
    ({"logit_bias": {"5": 101}}, "logit_bias", None),
    ({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]},
     "messages.0.content", "image_url"),
])
async def test_what_cannot_be_served_is_a_400_naming_the_param(
        client: httpx.AsyncClient, extra: dict[str, Any], param: str, says: str | None) -> None:
    r = await client.post(CHAT, json={"model": "m", "messages": MSG, **extra})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error"
    if says:
        assert says in err["message"]


async def test_hostile_schemas_are_400s_not_hangs(client: httpx.AsyncClient) -> None:
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(60):
        deep = {"type": "array", "items": deep}
    huge = {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(3000)}}
    schemas: list[dict[str, Any]] = [deep, huge, {"anyOf": []}, {"enum": list(range(1000))}]
    for schema in schemas:
        fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
        r = await client.post(CHAT, json={"model": "m", "messages": MSG, "response_format": fmt})
        assert r.status_code == 400 and r.json()["error"]["param"] == "response_format"
