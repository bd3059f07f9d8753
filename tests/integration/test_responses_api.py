"""The Responses API through the official client, against real daemons (fake engine).

The fake engine's answer is a function of its prompt: a Response equal to the chat answer for
the same messages proves what the worker was given (chaining, instructions).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.support.daemons import Daemon

pytestmark = pytest.mark.e2e
MODEL = "rbee-fake"


@pytest.fixture
def client(shared_queen: Daemon) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{shared_queen.url}/v1", api_key="unused", max_retries=0)


@pytest.fixture
def http(shared_queen: Daemon) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared_queen.url, timeout=60) as client:
        yield client


def _chat(client: openai.OpenAI, messages: Any, **kw: Any) -> str:
    r = client.chat.completions.create(model=MODEL, messages=messages, **kw)
    return r.choices[0].message.content or ""


def _stop_word(client: openai.OpenAI, prompt: str) -> str:
    """A word of the fake answer to `prompt`, fourth of its kind at most: a stop sequence
    that ends the answer early (a `completed` response) with some text before it."""
    words = _chat(client, [{"role": "user", "content": prompt}], max_tokens=20).split()
    return next(w for w in words[3:] if w not in words[:3])


def test_create_answers_like_chat_and_reports_usage(client: openai.OpenAI) -> None:
    r = client.responses.create(model=MODEL, input="hello there", max_output_tokens=7,
                                temperature=0.3, top_p=0.9)
    assert r.id.startswith("resp_") and r.object == "response" and r.model == MODEL
    assert r.output[0].type == "message" and r.output[0].role == "assistant"
    assert r.output_text == _chat(client, [{"role": "user", "content": "hello there"}],
                                  max_tokens=7)
    # The token limit ended it: incomplete, as OpenAI reports max_output_tokens.
    assert r.status == "incomplete" and r.incomplete_details is not None
    assert r.incomplete_details.reason == "max_output_tokens"
    assert r.usage is not None and r.usage.output_tokens == 7
    assert r.usage.total_tokens == r.usage.input_tokens + 7
    assert (r.temperature, r.top_p, r.max_output_tokens) == (0.3, 0.9, 7)


def test_a_stop_makes_it_completed(client: openai.OpenAI) -> None:
    stop = _stop_word(client, "abc")
    r = client.responses.create(model=MODEL, input="abc", extra_body={"stop": [stop]})
    assert r.status == "completed" and r.completed_at is not None
    assert r.output_text and stop not in r.output_text.split()


def test_stream_events_in_order_and_text_equal_to_non_streamed(client: openai.OpenAI) -> None:
    stop = _stop_word(client, "stream me")
    whole = client.responses.create(model=MODEL, input="stream me", extra_body={"stop": [stop]})
    events = list(client.responses.create(model=MODEL, input="stream me", stream=True,
                                          extra_body={"stop": [stop]}))
    kinds = [e.type for e in events]
    deltas = kinds.count("response.output_text.delta")
    assert deltas >= 1
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added", *["response.output_text.delta"] * deltas,
                     "response.output_text.done", "response.content_part.done",
                     "response.output_item.done", "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert len({e.response.id for e in events if hasattr(e, "response")}) == 1
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == whole.output_text
    done = events[-1]
    assert done.type == "response.completed" and done.response.output_text == text
    assert done.response.usage is not None and done.response.usage.output_tokens > 0


def test_the_stream_helper_accumulates_the_same_answer(client: openai.OpenAI) -> None:
    stop = _stop_word(client, "helper")
    whole = client.responses.create(model=MODEL, input="helper", extra_body={"stop": [stop]})
    with client.responses.stream(model=MODEL, input="helper",
                                 extra_body={"stop": [stop]}) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == whole.output_text
    assert client.responses.retrieve(final.id).output_text == final.output_text


def test_a_streamed_answer_at_the_token_limit_is_incomplete(client: openai.OpenAI) -> None:
    events = list(client.responses.create(model=MODEL, input="x", max_output_tokens=3,
                                          stream=True))
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.usage is not None
    assert events[-1].response.usage.output_tokens == 3


def test_retrieve_and_delete(client: openai.OpenAI) -> None:
    r = client.responses.create(model=MODEL, input="keep me", max_output_tokens=4,
                                metadata={"k": "v"}, instructions="be short")
    got = client.responses.retrieve(r.id)
    assert got.id == r.id and got.output_text == r.output_text
    assert got.metadata == {"k": "v"} and got.instructions == "be short"
    client.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.retrieve(r.id)
    assert info.value.body["param"] == "response_id"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model=MODEL, input="more", previous_response_id=r.id)
    assert info.value.body["param"] == "previous_response_id"  # type: ignore[index]


def test_store_false_is_not_kept(client: openai.OpenAI) -> None:
    r = client.responses.create(model=MODEL, input="forget me", max_output_tokens=3, store=False)
    assert r.output_text
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=MODEL, input="more", previous_response_id=r.id)


def test_previous_response_id_carries_the_conversation(client: openai.OpenAI) -> None:
    first = client.responses.create(model=MODEL, input="first question", max_output_tokens=5,
                                    instructions="only for the first turn")
    second = client.responses.create(model=MODEL, input="second question",
                                     previous_response_id=first.id, max_output_tokens=6)
    assert second.previous_response_id == first.id
    # What the worker got: the first exchange (not its instructions), then the new input.
    history = [{"role": "user", "content": "first question"},
               {"role": "assistant", "content": first.output_text},
               {"role": "user", "content": "second question"}]
    assert second.output_text == _chat(client, history, max_tokens=6)
    third = client.responses.create(model=MODEL, input="third", previous_response_id=second.id,
                                    max_output_tokens=4, stream=True)
    text = "".join(e.delta for e in third if e.type == "response.output_text.delta")
    history += [{"role": "assistant", "content": second.output_text},
                {"role": "user", "content": "third"}]
    assert text == _chat(client, history, max_tokens=4)


def test_items_input_with_typed_parts_and_a_function_call_round(client: openai.OpenAI) -> None:
    """Items become the chat messages a chat client would send: developer as system, typed
    parts as text parts, function_call as assistant tool_calls, its output a tool message."""
    tools: Any = [{"type": "function", "name": "get_weather", "description": "Weather",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                  "required": ["city"]}, "strict": True}]
    items: Any = [
        {"role": "developer", "content": "answer in one word"},
        {"role": "user", "content": [{"type": "input_text", "text": "weather in Paris?"}]},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather",
         "arguments": '{"city": "Paris"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
    ]
    r = client.responses.create(model=MODEL, max_output_tokens=4, tools=tools,
                                tool_choice="auto", input=items)
    assert r.tools[0].type == "function" and r.tools[0].name == "get_weather"
    chat: Any = [
        {"role": "system", "content": "answer in one word"},
        {"role": "user", "content": [{"type": "text", "text": "weather in Paris?"}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    assert r.output_text == _chat(client, chat, max_tokens=4, tools=[
        {"type": "function", "function": {k: v for k, v in tools[0].items() if k != "type"}}])


def test_text_format_json_schema_is_accepted(client: openai.OpenAI) -> None:
    fmt: Any = {"type": "json_schema", "name": "answer", "strict": True,
           "schema": {"type": "object", "properties": {"a": {"type": "string"}},
                      "required": ["a"], "additionalProperties": False}}
    r = client.responses.create(model=MODEL, input="give json", max_output_tokens=4,
                                text={"format": fmt})
    assert r.text is not None and r.text.format is not None
    assert r.text.format.type == "json_schema"


BAD: list[tuple[dict[str, Any], int, str]] = [
    ({"input": [{"type": "bogus"}]}, 400, "input[0].type"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, 400, "input[0].type"),
    ({"input": [{"role": "user"}]}, 400, "input[0].content"),
    ({"input": [{"role": "wizard", "content": "x"}]}, 400, "input[0].role"),
    ({"input": ["hi"]}, 400, "input[0]"),
    ({"input": [{"role": "user", "content": [{"type": "input_image",
                                              "image_url": "http://x/y.png"}]}]},
     400, "input[0].content[0].type"),
    ({"input": [{"role": "user", "content": "x"},
                {"type": "function_call_output", "call_id": "c9", "output": "y"}]},
     400, "input[1].call_id"),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "bad name!",
                 "arguments": "{}"}]}, 400, "input[0].name"),
    ({"input": "x", "tools": [{"type": "web_search"}]}, 400, "tools[0].type"),
    ({"input": "x", "tools": [{"type": "function"}]}, 400, "tools[0].name"),
    ({"input": "x", "tools": ["f"]}, 400, "tools[0]"),
    ({"input": "x", "tool_choice": {"type": "function", "name": "nope"}}, 400, "tool_choice"),
    ({"input": "x", "tool_choice": "sometimes"}, 400, "tool_choice"),
    ({"input": "x", "text": {"format": {"type": "xml"}}}, 400, "text.format.type"),
    ({"input": "x", "text": {"format": {"type": "json_schema", "name": "n"}}}, 400,
     "text.format.schema"),
    ({"input": "x", "previous_response_id": "resp_nope"}, 404, "previous_response_id"),
    ({"input": [{"role": "user", "content": "x"}] * 4097}, 400, "input"),
    ({"input": "x" * 9_000_000}, 413, ""),
    ({}, 400, "input"),
    ({"input": "x", "temperature": 7}, 400, "temperature"),
    ({"input": "x", "max_output_tokens": 0}, 400, "max_output_tokens"),
    ({"input": "x", "background": True}, 400, "background"),
    ({"input": "x", "metadata": {str(i): "v" for i in range(17)}}, 400, "metadata"),
    ({"input": "x", "stream": "yes"}, 400, "stream"),
    ({"input": 5}, 400, "input"),
    # Refused by the worker (chat's own checks), whole and streamed: still before any answer.
    ({"input": "x", "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ({"input": "x", "stop": ["a", "b", "c", "d", "e"], "stream": True}, 400, "stop"),
]


@pytest.mark.parametrize(("fields", "status", "param"), BAD,
                         ids=[b[2] or str(b[1]) for b in BAD])
def test_bad_input_is_an_envelope_naming_the_param(http: httpx.Client, fields: dict[str, Any],
                                                   status: int, param: str) -> None:
    r = http.post("/v1/responses", json={"model": MODEL, **fields})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["message"] and error["type"] == "invalid_request_error"
    if param:
        assert error["param"] is not None and error["param"].startswith(param), error


def test_hostile_bodies_never_500(http: httpx.Client) -> None:
    bodies = [b"", b"[]", b"null", b"{", b'{"model": "rbee-fake", "input": ' + b"[" * 5000,
              b'{"model": "\\u0000", "input": "x"}', b'{"model": "rbee-fake", "input": [{}]}',
              b'{"model": "rbee-fake", "input": [{"type": null}]}',
              b'{"model": "rbee-fake", "input": [{"role": "user", "content": [null]}]}',
              b'{"model": "rbee-fake", "input": "x", "text": "json"}',
              b'{"model": "rbee-fake", "input": "x", "tool_choice": ["auto"]}']
    for body in bodies:
        r = http.post("/v1/responses", content=body,
                      headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500, (body[:60], r.status_code, r.text)
        assert r.json()["error"]["message"]
    r = http.post("/v1/responses", content=b'{"model": "rbee-fake", "input": "x"}',
                  headers={"content-type": "text/plain"})
    assert r.status_code == 415
    assert http.get("/v1/responses/%00").status_code == 404
    assert http.delete("/v1/responses/nope").json()["error"]["param"] == "response_id"


def test_a_web_page_cannot_call_it(http: httpx.Client) -> None:
    r = http.post("/v1/responses", json={"model": MODEL, "input": "x"},
                  headers={"origin": "https://evil.example"})
    assert r.status_code == 403


def test_an_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model="gpt-4", input="x")
    assert info.value.code == "model_not_found"


WEATHER: Any = [{"type": "function", "name": "get_weather", "description": "Weather in a city",
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                "required": ["city"]}, "strict": True}]


def _fake_calls_tools() -> bool:
    """The fake engine answers tools with a call once the worker speaks tools (issue 11's
    worker half); until then this loop has nothing to drive it."""
    import importlib.util

    return importlib.util.find_spec("rbee.engines.tool_format") is not None


@pytest.mark.skipif(not _fake_calls_tools(), reason="the worker does not call tools yet")
def test_agent_loop_streamed_through_previous_response_id(client: openai.OpenAI) -> None:
    with client.responses.stream(model=MODEL, input="weather in Paris?",
                                 tools=WEATHER) as stream:
        kinds = [e.type for e in stream]
        first = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    assert kinds[-3:] == ["response.function_call_arguments.done",
                          "response.output_item.done", "response.completed"]
    call = next(o for o in first.output if o.type == "function_call")
    assert call.name == "get_weather" and call.call_id
    assert "city" in json.loads(call.arguments)
    # The tool ran; its result goes back, continuing the stored conversation.
    with client.responses.stream(model=MODEL, previous_response_id=first.id, tools=WEATHER,
                                 input=[{"type": "function_call_output",
                                         "call_id": call.call_id, "output": "sunny, 21 C"}],
                                 max_output_tokens=6) as stream:
        events = list(stream)
    # At the token limit the SDK has no "final response" (OpenAI sends response.incomplete).
    answer = events[-1]
    assert answer.type == "response.incomplete"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text and text == answer.response.output_text
    assert client.responses.retrieve(answer.response.id).previous_response_id == first.id


@pytest.mark.skipif(not _fake_calls_tools(), reason="the worker does not call tools yet")
def test_agent_loop_with_output_items_sent_back_as_input(client: openai.OpenAI) -> None:
    """The SDK's stateless pattern: `input += response.output`, then the tool's output."""
    items: Any = [{"role": "user", "content": "weather in Oslo?"}]
    first = client.responses.create(model=MODEL, input=items, tools=WEATHER, store=False)
    call = next(o for o in first.output if o.type == "function_call")
    items += [o.model_dump(exclude_none=True) for o in first.output]
    items.append({"type": "function_call_output", "call_id": call.call_id, "output": "snow"})
    events = list(client.responses.create(model=MODEL, input=items, tools=WEATHER,
                                          max_output_tokens=5, stream=True))
    assert events[-1].type in ("response.completed", "response.incomplete")
    assert any(e.type == "response.output_text.delta" for e in events)


def test_a_client_that_hangs_up_mid_stream_frees_the_worker(slow_queen: Daemon) -> None:
    """Fake tokens at 50/s: the abandoned answer would hold the only worker for 10 s."""
    body = {"model": MODEL, "input": "long", "max_output_tokens": 500, "stream": True}
    with httpx.Client(base_url=slow_queen.url, timeout=60) as http:
        with http.stream("POST", "/v1/responses", json=body) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line == "event: response.output_text.delta":
                    break
        t0 = time.monotonic()
        again = http.post("/v1/responses", json={"model": MODEL, "input": "next",
                                                 "max_output_tokens": 2})
        assert again.status_code == 200 and again.json()["status"] == "incomplete"
        assert time.monotonic() - t0 < 5.0  # not behind the ~10 s nobody reads
