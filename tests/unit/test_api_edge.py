"""Strict types at the API edge, and answers that match OpenAI's schema."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rbee.api.jobs import InferOp, WorkerSpawnOp
from rbee.api.openai import ChatCompletionRequest, CompletionRequest
from rbee.engines.base import Finish
from rbee.worker.responses import Formatter, Kind

CHAT = '{"model": "m", "messages": [{"role": "user", "content": "hi"}]'


@pytest.mark.parametrize(("extra", "field"), [
    ('"stream": 0', "stream"), ('"stream": "false"', "stream"), ('"top_p": false', "top_p"),
    ('"temperature": "0.5"', "temperature"), ('"max_tokens": true', "max_tokens"),
    ('"max_tokens": 1.0', "max_tokens"), ('"seed": "7"', "seed"), ('"logprobs": 0', "logprobs"),
    ('"stop": 1', "stop"), ('"model": "m\\n"', "model"), ('"model": "m\\u0085"', "model"),
])
def test_chat_fields_are_not_coerced(extra: str, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ChatCompletionRequest.model_validate_json(f"{CHAT}, {extra}}}")
    assert caught.value.errors()[0]["loc"][0] == field


def test_the_spec_types_are_kept() -> None:
    req = ChatCompletionRequest.model_validate_json(
        f'{CHAT}, "temperature": 1, "top_p": 0, "stream": null, "stop": ["a"], "seed": -1}}')
    assert req.temperature == 1.0 and isinstance(req.temperature, float)
    assert not req.stream and req.stop_list() == ["a"]
    text = CompletionRequest.model_validate_json(
        '{"model": "m", "prompt": "x", "echo": false, "logprobs": 2}')
    assert text.prompt_text() == "x"
    with pytest.raises(ValidationError):
        CompletionRequest.model_validate_json('{"model": "m", "prompt": "x", "echo": 0}')


@pytest.mark.parametrize(("model", "body", "field"), [
    (ChatCompletionRequest, '"functions": [{"name": "f", "parameters": {}}]', "functions"),
    (ChatCompletionRequest, '"function_call": "auto"', "function_call"),
    (ChatCompletionRequest, '"audio": {"voice": "alloy", "format": "wav"}', "audio"),
    (ChatCompletionRequest, '"modalities": ["text", "audio"]', "modalities"),
    (ChatCompletionRequest, '"prediction": {"type": "content", "content": "x"}', "prediction"),
    (ChatCompletionRequest, '"web_search_options": {}', "web_search_options"),
    (CompletionRequest, '"echo": true', "echo"),
    (CompletionRequest, '"best_of": 3', "best_of"),
    (CompletionRequest, '"suffix": "end"', "suffix"),
])
def test_fields_rbee_does_not_honour_are_refused_not_dropped(
        model: type[ChatCompletionRequest] | type[CompletionRequest], body: str,
        field: str) -> None:
    """Issue 11: a field silently ignored gives an answer that looks valid and is wrong."""
    head = CHAT if model is ChatCompletionRequest else '{"model": "m", "prompt": "x"'
    with pytest.raises(ValidationError) as caught:
        model.model_validate_json(f"{head}, {body}}}")
    assert caught.value.errors()[0]["loc"][0] == field
    # their neutral values stay accepted (clients send them by default)
    ChatCompletionRequest.model_validate_json(f'{CHAT}, "modalities": ["text"]}}')
    CompletionRequest.model_validate_json(
        '{"model": "m", "prompt": "x", "echo": false, "best_of": 1, "suffix": ""}')


def test_job_operations_are_strict_and_check_the_model_name() -> None:
    with pytest.raises(ValidationError):
        InferOp.model_validate_json('{"operation": "infer", "prompt": "x", "stream": 1}')
    with pytest.raises(ValidationError):
        InferOp.model_validate_json('{"operation": "infer", "prompt": "x", "model": "a\\tb"}')
    with pytest.raises(ValidationError):
        WorkerSpawnOp.model_validate_json('{"operation": "worker_spawn", "keep_warm": "yes"}')
    assert InferOp.model_validate_json('{"operation": "infer", "prompt": "x"}').model == ""


@pytest.mark.parametrize("kind", ["chat", "completion"])
def test_answers_leave_system_fingerprint_out(kind: Kind) -> None:
    """The spec types it a string; null broke clients that validate answers."""
    fmt = Formatter(kind, "m")
    finish = Finish(reason="stop", prompt_tokens=1, completion_tokens=1)
    for frame in (fmt.whole("hi", finish), fmt.chunk("hi", None, first=True),
                  fmt.chunk(None, "stop"), fmt.usage_chunk(finish)):
        assert "system_fingerprint" not in frame
