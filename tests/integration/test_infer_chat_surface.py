"""Issue 11 through the job API and `rbee infer`: tools, a JSON schema, logprobs, the
sampling fields; bad input named. Real queen, hive and fake worker (the fake engine answers
a schema with a minimal valid instance and calls the named or first tool)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rbee.client import QueenClient
from tests.support.daemons import Daemon, rbee_env, run_cli, running_queen

pytestmark = pytest.mark.e2e
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"},
                                           "age": {"type": "integer"}},
          "required": ["name", "age"], "additionalProperties": False}


@pytest.fixture(scope="module")
def queen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    yield from running_queen(rbee_env(tmp_path_factory.mktemp("infer-surface")))


def test_infer_jobs_call_tools_and_follow_a_schema(queen: Daemon) -> None:
    client = QueenClient(queen.url)
    try:
        called = client.run("infer", model="rbee-fake", prompt="weather in Paris?",
                            tools=[WEATHER], tool_choice="required")
        assert called["finish_reason"] == "tool_calls"
        (call,) = called["tool_calls"]
        assert call["function"]["name"] == "get_weather" and call["id"]
        assert isinstance(json.loads(call["function"]["arguments"])["city"], str)
        shaped = client.run("infer", model="rbee-fake", prompt="a person", response_format={
            "type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA,
                                                   "strict": True}})
        person = json.loads(shaped["text"])
        assert set(person) == {"name", "age"} and isinstance(person["age"], int)
        scored = client.run("infer", model="rbee-fake", prompt="hi", max_tokens=3,
                            logprobs=True, top_logprobs=2)
        assert len(scored["logprobs"]) == scored["usage"]["completion_tokens"]
        assert all(len(t["top_logprobs"]) == 2 for t in scored["logprobs"])
    finally:
        client.close()


@pytest.mark.parametrize(("extra", "param"), [
    ({"n": 2}, "n"),
    ({"top_logprobs": 21}, "top_logprobs"),
    ({"tools": [{"type": "retrieval"}]}, "tools"),
    ({"response_format": {"type": "yaml"}}, "response_format"),
    ({"tool_choice": "sometimes"}, "tool_choice"),
])
def test_bad_chat_fields_on_an_infer_job_are_400s_naming_them(queen: Daemon,
                                                              extra: dict[str, object],
                                                              param: str) -> None:
    r = httpx.post(f"{queen.url}/v1/jobs", json={"operation": "infer", "model": "rbee-fake",
                                                 "prompt": "hi", **extra})
    assert r.status_code == 400, r.text
    assert param in json.dumps(r.json()["error"]), r.text


def test_rbee_infer_json_schema_and_tools(queen: Daemon, tmp_path: Path) -> None:
    schema = tmp_path / "person.json"
    schema.write_text(json.dumps(SCHEMA))
    done = run_cli(queen.env, "infer", "a person", "-m", "rbee-fake", "--json-schema",
                   str(schema))
    assert done.returncode == 0, done.stderr
    assert set(json.loads(done.stdout)) == {"name", "age"}
    # JSON cut by the token limit: the text is printed, the exit status says it is incomplete.
    cut = run_cli(queen.env, "infer", "a person", "-m", "rbee-fake", "--json-schema",
                  str(schema), "--max-tokens", "2")
    assert cut.returncode == 1 and "before its JSON was complete" in cut.stderr, cut.stderr
    assert cut.stdout.strip() and "Traceback" not in cut.stderr
    cut = run_cli(queen.env, "--json", "infer", "a person", "-m", "rbee-fake", "--json-schema",
                  str(schema), "--max-tokens", "2")
    assert cut.returncode == 1 and json.loads(cut.stdout)["finish_reason"] == "length"
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([WEATHER["function"]]))  # a bare list of functions works too
    done = run_cli(queen.env, "--json", "infer", "weather?", "-m", "rbee-fake", "--tools",
                   str(tools), "--tool-choice", "get_weather")
    assert done.returncode == 0, done.stderr
    (call,) = json.loads(done.stdout)["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    human = run_cli(queen.env, "infer", "weather?", "-m", "rbee-fake", "--tools", str(tools),
                    "--tool-choice", "required")
    assert human.returncode == 0 and "tool call " in human.stdout and "get_weather(" in \
        human.stdout, human.stdout
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    bad = run_cli(queen.env, "infer", "x", "-m", "rbee-fake", "--json-schema", str(broken))
    assert bad.returncode == 1 and "not a JSON file" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr
