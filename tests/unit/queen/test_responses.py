"""Responses ⇄ chat translation, pure: requests to chat bodies, chat answers and chunks to
Response objects and events, each checked against the official SDK's own types."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from rbee.api.responses import ChatAnswer, OutputMessage, ResponsesRequest
from rbee.core.errors import InvalidRequest, WorkerUnavailable
from rbee.queen.responses.events import EventStream
from rbee.queen.responses.inputs import plan
from rbee.queen.responses.outputs import answer_output, as_input, finished, skeleton, usage

EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
TOOL = {"type": "function", "name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": True}


def _req(**fields: Any) -> ResponsesRequest:
    return ResponsesRequest.model_validate({"model": "m", **fields})


def _events(frames: list[bytes]) -> list[Any]:
    out = []
    for frame in frames:
        kind, data = frame.decode().rstrip("\n").split("\n")
        event = EVENTS.validate_python(json.loads(data.removeprefix("data: ")))
        assert kind == f"event: {event.type}"
        out.append(event)
    return out


def _chunk(content: str | None = None, calls: list[dict[str, Any]] | None = None,
           finish: str | None = None, used: dict[str, int] | None = None) -> ChatAnswer:
    delta: dict[str, Any] = {}
    if content is not None:
        delta["content"] = content
    if calls is not None:
        delta["tool_calls"] = calls
    choices = [] if used else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return ChatAnswer.model_validate({"choices": choices, "usage": used})


def test_items_become_chat_messages_with_tool_calls_and_results() -> None:
    req = _req(instructions="be brief", tools=[TOOL], tool_choice={"type": "function",
                                                                   "name": "get_weather"},
               text={"format": {"type": "json_schema", "name": "w", "strict": True,
                                "schema": {"type": "object"}}},
               max_output_tokens=9, seed=3, stop=["x"], reasoning={"effort": "low"},
               input=[{"role": "developer", "content": "dev"},
                      {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
                      {"role": "assistant", "content": [{"type": "output_text", "text": "a",
                                                         "annotations": []}],
                       "id": "msg_1", "status": "completed"},
                      {"type": "function_call", "call_id": "c1", "name": "get_weather",
                       "arguments": "{}", "id": "fc_1", "status": "completed"},
                      {"type": "function_call", "call_id": "c2", "name": "get_weather",
                       "arguments": "{}"},
                      {"type": "function_call_output", "call_id": "c1", "output": "sun"},
                      {"type": "function_call_output", "call_id": "c2",
                       "output": [{"type": "input_text", "text": "rain"}]}])
    chat = plan(req, [], 10_000).chat
    assert chat["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "system", "content": "dev"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "a"}], "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "get_weather", "arguments": "{}"}},
            {"id": "c2", "type": "function",
             "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sun"},
        {"role": "tool", "tool_call_id": "c2", "content": "rain"}]
    assert chat["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather in a city",
        "parameters": TOOL["parameters"], "strict": True}}]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert chat["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "w", "schema": {"type": "object"}, "strict": True}}
    assert (chat["max_tokens"], chat["seed"], chat["stop"]) == (9, 3, ["x"])
    assert "reasoning" not in chat and chat["stream"] is False


def test_json_object_and_text_formats() -> None:
    assert plan(_req(input="x", text={"format": {"type": "json_object"}}), [], 99
                ).chat["response_format"] == {"type": "json_object"}
    assert "response_format" not in plan(_req(input="x", text={"format": {"type": "text"}}),
                                         [], 99).chat


def test_history_comes_first_and_sizes_are_checked() -> None:
    history = [{"type": "message", "role": "user", "content": "old"}]
    chat = plan(_req(input="new", stream=True), history, 99).chat
    assert [m["content"] for m in chat["messages"]] == ["old", "new"]
    assert chat["stream_options"] == {"include_usage": True}
    with pytest.raises(InvalidRequest) as info:
        plan(_req(input="x" * 100), [], 99)
    assert info.value.param == "input"
    with pytest.raises(InvalidRequest) as info:
        plan(_req(input="x"), [{"type": "message", "role": "user", "content": "y" * 99}], 99)
    assert info.value.param == "previous_response_id"


def test_a_whole_answer_with_text_and_tool_calls() -> None:
    answer = ChatAnswer.model_validate({"choices": [{"index": 0, "finish_reason": "tool_calls",
        "message": {"role": "assistant", "content": "let me check", "tool_calls": [
            {"id": "call_9", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7,
                  "prompt_tokens_details": {"cached_tokens": 2}}})
    output, finish = answer_output(answer)
    start = skeleton(_req(input="x", tools=[TOOL]), "resp_1", 1)
    done = finished(start, output, finish, usage(answer.usage), 2)
    sdk = Response.model_validate(done.model_dump(mode="json"))
    assert sdk.status == "completed" and sdk.output_text == "let me check"
    call = sdk.output[1]
    assert call.type == "function_call" and call.call_id == "call_9"
    assert json.loads(call.arguments) == {"city": "Paris"}
    assert sdk.usage is not None and sdk.usage.input_tokens_details.cached_tokens == 2
    assert sdk.usage.total_tokens == 12
    assert as_input(done.output)[1] == {"type": "function_call", "call_id": "call_9",
                                        "name": "get_weather",
                                        "arguments": '{"city":"Paris"}'}


def test_streamed_text_then_parallel_tool_calls() -> None:
    stream = EventStream(skeleton(_req(input="x", tools=[TOOL]), "resp_1", 1))
    frames = stream.start()
    frames += stream.feed(_chunk(""))  # the role chunk: no item yet
    frames += stream.feed(_chunk("Checking"))
    frames += stream.feed(_chunk(calls=[{"index": 0, "id": "call_a", "type": "function",
                                         "function": {"name": "get_weather",
                                                      "arguments": ""}}]))
    frames += stream.feed(_chunk(calls=[{"index": 0, "function": {"arguments": '{"city":'}}]))
    frames += stream.feed(_chunk(calls=[{"index": 0, "function": {"arguments": '"Oslo"}'}}]))
    frames += stream.feed(_chunk(calls=[{"index": 1, "id": "call_b", "function": {
        "name": "get_weather", "arguments": '{"city":"Rome"}'}}]))
    frames += stream.feed(_chunk(finish="tool_calls"))
    frames += stream.feed(_chunk(used={"prompt_tokens": 3, "completion_tokens": 4}))
    done, last = stream.finish(2)
    events = _events(frames + last)
    assert [e.type for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.output_index for e in events if e.type == "response.output_item.done"] == [0, 1, 2]
    args = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert [(a.name, json.loads(a.arguments)) for a in args] == [
        ("get_weather", {"city": "Oslo"}), ("get_weather", {"city": "Rome"})]
    final = events[-1].response
    assert final.output_text == "Checking" and final.usage.output_tokens == 4
    assert [o.type for o in final.output] == ["message", "function_call", "function_call"]
    assert final.output[1].call_id == "call_a" and done.status == "completed"


def test_a_stream_cut_at_the_token_limit_or_broken_mid_way() -> None:
    stream = EventStream(skeleton(_req(input="x"), "resp_1", 1))
    stream.start()
    stream.feed(_chunk(" a"))
    stream.feed(_chunk(finish="length"))
    done, last = stream.finish(2)
    assert _events(last)[-1].type == "response.incomplete"
    assert done.incomplete_details is not None and done.output[0].status == "incomplete"

    broken = EventStream(skeleton(_req(input="x"), "resp_2", 1))
    broken.start()
    broken.feed(_chunk(" a"))
    failed, frame = broken.fail(WorkerUnavailable("worker w1 failed mid-stream"))
    event = _events([frame])[0]
    assert event.type == "response.failed" and event.response.error.code == "server_error"
    partial = failed.output[0]
    assert failed.status == "failed" and isinstance(partial, OutputMessage)
    assert partial.content[0].text == " a" and partial.status == "incomplete"


@pytest.mark.parametrize(("fields", "param"), [
    ({"input": [{"type": "reasoning", "summary": []}]}, "input[0].type"),
    ({"input": [{"type": "message", "role": "user", "content": 3}]}, "input[0].content"),
    ({"input": [{"type": "function_call", "call_id": "", "name": "f", "arguments": "{}"}]},
     "input[0].call_id"),
    ({"input": [{"role": "user", "content": [{"type": "input_text"}]}]},
     "input[0].content[0].text"),
    ({"input": "x", "tools": [TOOL, TOOL]}, "tools"),
    ({"input": "x", "tool_choice": "required"}, "tool_choice"),
    ({"input": "x", "tool_choice": {"type": "file_search"}}, "tool_choice"),
    ({"input": "x", "tools": [{**TOOL, "parameters": "no"}]}, "tools[0].parameters"),
    ({"input": []}, "input"),
])
def test_bad_items_name_their_param(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        plan(_req(**fields), [], 10_000)
    assert info.value.param == param
