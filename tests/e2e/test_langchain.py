"""Issue 11 through LangChain (langchain-openai's ChatOpenAI) against a queen serving the real
SmolLM2 model: bind_tools gives valid tool calls, with_structured_output gives a validated
object (json_schema and function calling), 20 runs each, and an agent loop runs tool call ->
ToolMessage -> final answer, streamed. Nothing here counts tokens (tiktoken would download its
encodings)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, ConfigDict, Field

from tests.support.daemons import Daemon, rbee_env, running_queen

pytestmark = [pytest.mark.e2e, pytest.mark.model]
MODEL = "smollm2-135m-instruct"
CITIES = ["Paris", "Berlin", "Tokyo", "Lima", "Oslo", "Cairo", "Madrid", "Rome", "Seoul",
          "Quito"]
ASKS = ["What is the weather in {city}?", "Is it raining in {city} right now?",
        "Tell me the temperature in {city} in fahrenheit.", "Should I take a coat in {city}?"]


@tool
def get_weather(city: str, unit: Literal["celsius", "fahrenheit"]) -> str:
    """Current weather for a city."""
    return f"{city}: sunny, 21 degrees {unit}, light wind"


class GetTime(BaseModel):
    """Local time in a city."""

    model_config = ConfigDict(extra="forbid")
    city: str = Field(description="The city")


class Pet(BaseModel):
    """A pet and what it plays with."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=40)
    species: Literal["cat", "dog", "bird"]
    age: int
    toys: list[Annotated[str, Field(max_length=30)]] = Field(max_length=3)


@pytest.fixture(scope="module")
def queen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    yield from running_queen(rbee_env(tmp_path_factory.mktemp("langchain"),
                                      RBEE_QUEEN_WORKER_THREADS="1"))


@pytest.fixture(scope="module")
def chat(queen: Daemon) -> ChatOpenAI:
    return ChatOpenAI(base_url=f"{queen.url}/v1", api_key="x", model=MODEL,
                      temperature=0.7, max_retries=0, timeout=120)


def test_bind_tools_gives_valid_tool_calls(chat: ChatOpenAI) -> None:
    choices: list[Any] = ["any", "get_weather"]
    for i in range(20):
        llm = chat.bind_tools([get_weather, GetTime], tool_choice=choices[i % 2])
        ask = ASKS[i % len(ASKS)].format(city=CITIES[i % len(CITIES)])
        msg = llm.invoke(ask, seed=i, max_tokens=96)
        assert isinstance(msg, AIMessage)
        assert msg.tool_calls and not msg.invalid_tool_calls, (i, msg)
        for call in msg.tool_calls:
            assert call["id"] and call["type"] == "tool_call"
            if call["name"] == "get_weather":
                get_weather.args_schema.model_validate(call["args"])  # type: ignore[union-attr]
            else:
                assert i % 2 == 0 and call["name"] == "GetTime", call
                GetTime.model_validate(call["args"])


ANIMALS = ["a lazy cat", "a loud dog", "a tiny bird", "an old cat", "a young dog"]


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_with_structured_output_validates_every_time(chat: ChatOpenAI, method: str) -> None:
    # json_schema is ChatOpenAI's default: response_format, parsed by the SDK's .parse();
    # function_calling forces a tool named after the model and parses its arguments.
    structured = chat.with_structured_output(Pet, method=method)  # type: ignore[arg-type]
    for i in range(20):
        pet = structured.invoke(f"Describe {ANIMALS[i % 5]} with its name, species, age and "
                                "toys.", seed=100 + i, max_tokens=200)
        assert isinstance(pet, Pet), (i, pet)


def _stream(llm: Any, messages: list[BaseMessage], **kwargs: Any) -> AIMessageChunk:
    chunks = list(llm.stream(messages, **kwargs))
    assert len(chunks) > 1
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    assert isinstance(whole, AIMessageChunk)
    return whole


def test_an_agent_loop(chat: ChatOpenAI) -> None:
    """Streamed both ways: the tool call arrives as tool_call_chunks and LangChain joins them."""
    messages: list[BaseMessage] = [HumanMessage("What is the weather in Oslo, in celsius?")]
    first = _stream(chat.bind_tools([get_weather], tool_choice="any"), messages, seed=3,
                    max_tokens=96)
    assert len(first.tool_calls) >= 1 and not first.invalid_tool_calls, first
    assert first.response_metadata.get("finish_reason") == "tool_calls"
    messages.append(first)
    for call in first.tool_calls:
        messages.append(get_weather.invoke(call))  # a ToolMessage with the call's id
    final = _stream(chat.bind_tools([get_weather], tool_choice="none"), messages, seed=3,
                    max_tokens=48)
    assert not final.tool_calls and isinstance(final.content, str) and final.content.strip()
    assert final.response_metadata.get("finish_reason") in ("stop", "length")
