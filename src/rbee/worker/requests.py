"""OpenAI request bodies to the engine's GenerationRequests, one per choice.

Conversation history with tool calls and tool results is written into plain text turns here,
in the format the tool grammar makes the model speak (engines.tool_format); what a model
cannot read (images for a text model, more choices than allowed) is refused before anything
runs, with the param it concerns.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rbee.api.openai import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    NamedToolChoice,
)
from rbee.core.errors import InvalidRequest
from rbee.engines.base import GenerationRequest, ToolMode, ToolSpec
from rbee.engines.tool_format import render_call, render_calls, tool_response

DEFAULT_MAX_N = 8


def _messages(messages: list[ChatMessage]) -> list[dict[str, str]]:
    names = {c.id: c.function.name for m in messages for c in m.tool_calls or []}
    out = []
    for m in messages:
        if m.role == "tool":
            name = names.get(m.tool_call_id or "") or m.name
            out.append({"role": "user", "content": tool_response(name, m.text())})
        elif m.role == "assistant" and m.tool_calls:
            calls = [render_call(c.function.name, c.function.arguments) for c in m.tool_calls]
            out.append({"role": "assistant", "content": m.text() + render_calls(calls)})
        else:
            out.append({"role": m.role, "content": m.text()})
    return out


def _refuse_unreadable(messages: list[ChatMessage], model: str) -> None:
    for i, m in enumerate(messages):
        parts = m.other_parts()
        if parts:
            raise InvalidRequest(
                f"model {model!r} reads text only: messages[{i}] has a {parts[0]!r} content "
                "part, which it cannot see (send text parts only, or use a vision model)",
                param=f"messages.{i}.content")


def _tools(body: ChatCompletionRequest) -> dict[str, Any]:
    tools = tuple(ToolSpec(t.function.name, t.function.description or "",
                           t.function.parameters) for t in body.tools or [])
    choice = body.tool_choice
    name = choice.function.name if isinstance(choice, NamedToolChoice) else None
    mode: ToolMode
    if isinstance(choice, NamedToolChoice):
        mode = "required"
    else:
        mode = choice or ("auto" if tools else "none")
    return {"tools": tools, "tool_mode": mode, "tool_name": name,
            "parallel_tool_calls": body.parallel_tool_calls is not False}


def generation_requests(body: ChatCompletionRequest | CompletionRequest, *, model: str,
                        vision: bool, max_n: int) -> list[GenerationRequest]:
    n = body.n or 1
    if n > max_n:
        raise InvalidRequest(f"n is {n}; this worker generates at most {max_n} choices per "
                             "request", param="n")
    common: dict[str, Any] = dict(
        max_tokens=body.token_limit(), temperature=body.temperature, top_p=body.top_p,
        top_k=body.top_k, seed=body.seed, stop=body.stop_list(),
        presence_penalty=body.presence_penalty or 0.0,
        frequency_penalty=body.frequency_penalty or 0.0, logit_bias=body.bias_map(),
    )
    if isinstance(body, ChatCompletionRequest):
        if not vision:
            _refuse_unreadable(body.messages, model)
        first = GenerationRequest(
            kind="chat", messages=_messages(body.messages), json_schema=body.output_schema(),
            logprobs=(body.top_logprobs or 0) if body.logprobs else None,
            **_tools(body), **common)
    else:
        first = GenerationRequest(kind="completion", prompt=body.prompt_text(),
                                  logprobs=body.logprobs, **common)
    # Choice i of a seeded request is seeded seed+i: choice 0 is the n=1 answer, and every
    # worker of the model gives the same n answers.
    return [first if i == 0 or first.seed is None else replace(first, seed=first.seed + i)
            for i in range(n)]
