"""An agent loop through the Responses API with the real SmolLM2 model: the model calls a
tool (grammar-constrained, so a 135M model's call always parses), the tool's result goes
back through previous_response_id, and the final answer streams. Official SDK throughout."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.support.daemons import Daemon, rbee_env, running_queen

pytestmark = [pytest.mark.e2e, pytest.mark.model]
MODEL = "smollm2-135m-instruct"
TOOLS: Any = [{"type": "function", "name": "get_weather",
               "description": "Current weather in a city",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                              "required": ["city"], "additionalProperties": False},
               "strict": True}]


@pytest.fixture(scope="module")
def model_queen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    yield from running_queen(rbee_env(tmp_path_factory.mktemp("responses-model"),
                                      RBEE_QUEEN_WORKER_THREADS="1"))


@pytest.fixture
def client(model_queen: Daemon) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{model_queen.url}/v1", api_key="unused", max_retries=0,
                         timeout=300)


def _worker_calls_tools() -> bool:
    import importlib.util

    return importlib.util.find_spec("rbee.engines.tool_format") is not None


@pytest.mark.skipif(not _worker_calls_tools(), reason="the worker does not call tools yet")
def test_streamed_agent_loop(client: openai.OpenAI) -> None:
    with client.responses.stream(model=MODEL, input="What is the weather in Paris?",
                                 tools=TOOLS, tool_choice="required",
                                 extra_body={"seed": 0}) as stream:
        kinds = [e.type for e in stream]
        first = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    call = next(o for o in first.output if o.type == "function_call")
    assert call.name == "get_weather"
    args = json.loads(call.arguments)
    assert isinstance(args.get("city"), str)

    with client.responses.stream(
            model=MODEL, previous_response_id=first.id, tools=TOOLS, tool_choice="none",
            input=[{"type": "function_call_output", "call_id": call.call_id,
                    "output": json.dumps({"city": args["city"], "weather": "sunny, 21 C"})}],
            max_output_tokens=48, extra_body={"seed": 0}) as stream:
        events = list(stream)
    last = events[-1]
    assert last.type in ("response.completed", "response.incomplete")
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text.strip() and text == last.response.output_text
    assert last.response.usage is not None and last.response.usage.input_tokens > 20


@pytest.mark.skipif(not _worker_calls_tools(), reason="no structured output in the worker yet")
def test_json_schema_output_parses(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"capital": {"type": "string"}},
              "required": ["capital"], "additionalProperties": False}
    fmt: Any = {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}
    for seed in range(3):
        r = client.responses.create(model=MODEL, input="What is the capital of France?",
                                    text={"format": fmt}, max_output_tokens=64,
                                    extra_body={"seed": seed})
        assert isinstance(json.loads(r.output_text)["capital"], str)
