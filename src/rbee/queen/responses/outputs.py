"""A worker's chat answer as a Response object."""

from __future__ import annotations

import uuid
from typing import Any

from rbee.api.responses import (
    ChatAnswer,
    ChatFunction,
    ChatUsage,
    FunctionCall,
    IncompleteDetails,
    InputTokensDetails,
    ItemStatus,
    OutputItem,
    OutputMessage,
    OutputText,
    ResponseObject,
    ResponsesRequest,
    Usage,
)
from rbee.core.errors import UpstreamError


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def skeleton(req: ResponsesRequest, response_id: str, created_at: int) -> ResponseObject:
    """The response before any output: the request's settings, echoed as the spec wants."""
    tools = [t for t in req.tools or () if isinstance(t, dict)]
    fmt = req.text.format if req.text and req.text.format else {"type": "text"}
    choice = req.tool_choice if isinstance(req.tool_choice, str | dict) else "auto"
    return ResponseObject(
        id=response_id, created_at=created_at, status="in_progress", model=req.model,
        instructions=req.instructions, metadata=req.metadata or {},
        parallel_tool_calls=req.parallel_tool_calls is not False,
        temperature=req.temperature, top_p=req.top_p, max_output_tokens=req.max_output_tokens,
        previous_response_id=req.previous_response_id, tool_choice=choice, tools=tools,
        text={"format": fmt}, store=req.store is not False, user=req.user)


def parse_answer(raw: bytes | dict[str, Any]) -> ChatAnswer:
    try:
        if isinstance(raw, bytes):
            return ChatAnswer.model_validate_json(raw)
        return ChatAnswer.model_validate(raw)
    except ValueError:
        raise UpstreamError("the worker's chat answer could not be read") from None


def answer_output(answer: ChatAnswer) -> tuple[list[OutputItem], str | None]:
    """The output items of a whole chat answer, and its finish reason."""
    if not answer.choices or answer.choices[0].message is None:
        raise UpstreamError("the worker's chat answer has no message")
    choice = answer.choices[0]
    message = choice.message
    assert message is not None
    status = item_status(choice.finish_reason)
    items: list[OutputItem] = []
    if message.content:
        items.append(OutputMessage(id=new_id("msg"), status=status,
                                   content=[OutputText(text=message.content)]))
    for call in message.tool_calls or ():
        function = call.function or ChatFunction()
        items.append(FunctionCall(id=new_id("fc"), call_id=call.id or new_id("call"),
                                  name=function.name or "", arguments=function.arguments or "",
                                  status="completed"))
    return items, choice.finish_reason


def item_status(finish_reason: str | None) -> ItemStatus:
    return "incomplete" if finish_reason == "length" else "completed"


def usage(chat: ChatUsage | None) -> Usage | None:
    if chat is None:
        return None
    cached = (chat.prompt_tokens_details or {}).get("cached_tokens")
    return Usage(input_tokens=chat.prompt_tokens, output_tokens=chat.completion_tokens,
                 total_tokens=chat.prompt_tokens + chat.completion_tokens,
                 input_tokens_details=InputTokensDetails(
                     cached_tokens=cached if isinstance(cached, int) else 0))


def finished(start: ResponseObject, output: list[OutputItem], finish_reason: str | None,
             used: Usage | None, now: int) -> ResponseObject:
    """The response once its answer is in: `length` (the token limit) makes it incomplete,
    as OpenAI reports `max_output_tokens`."""
    if finish_reason == "length":
        return start.model_copy(update={
            "status": "incomplete", "output": output, "usage": used,
            "incomplete_details": IncompleteDetails(reason="max_output_tokens")})
    return start.model_copy(update={"status": "completed", "output": output, "usage": used,
                                    "completed_at": now})


def as_input(output: list[OutputItem]) -> list[dict[str, Any]]:
    """A stored response's output as input items of the next turn (previous_response_id)."""
    items: list[dict[str, Any]] = []
    for item in output:
        if isinstance(item, OutputMessage):
            items.append({"type": "message", "role": "assistant",
                          "content": [{"type": "output_text", "text": p.text}
                                      for p in item.content]})
        else:
            items.append({"type": "function_call", "call_id": item.call_id, "name": item.name,
                          "arguments": item.arguments})
    return items
