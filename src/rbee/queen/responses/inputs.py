"""A Responses request, checked item by item, as a chat-completions request.

Each item, tool and format is checked on its own so that a 400 names exactly what is wrong
(`input[2].call_id`, `tools[0].type`, `text.format.schema`). Items are normalized to plain
Responses items (the form stored for `previous_response_id`), then mapped to chat messages:
`function_call` items become an assistant message's `tool_calls`, `function_call_output`
items `tool` messages, `developer` and `instructions` system messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from rbee.api.responses import (
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionTool,
    JsonSchemaFormat,
    MessageItem,
    ResponsesRequest,
    TextPart,
)
from rbee.core.errors import InvalidRequest

Item = dict[str, Any]
MAX_ITEMS = 4096  # a conversation longer than this is not a chat any model can take
ITEM_TYPES: dict[str, type[BaseModel]] = {
    "message": MessageItem,
    "function_call": FunctionCallItem,
    "function_call_output": FunctionCallOutputItem,
}
_UNION_BRANCHES = frozenset({"str", "list[dict[str,any]]"})
TOOL_CHOICES = frozenset({"auto", "none", "required"})
# Fields of a Responses request sent on to the worker unchanged: chat's sampling fields that
# the Responses API lacks (clients send them as extra body fields).
PASSED_THROUGH = ("seed", "top_k", "stop", "presence_penalty", "frequency_penalty",
                  "logit_bias")


@dataclass(frozen=True)
class Plan:
    """What one request becomes: the conversation to store, the body a worker gets."""

    conversation: list[Item]  # inherited items first, then this request's input
    chat: dict[str, Any]


def plan(req: ResponsesRequest, history: Sequence[Item], max_chars: int) -> Plan:
    """`history`: the items `previous_response_id` carries (already checked when stored)."""
    items = input_items(req.input)
    conversation = [*history, *items]
    if not conversation:
        raise InvalidRequest("input is required (a string or a list of items)", param="input")
    # Too big because of this input, or because of what previous_response_id carries.
    own = sum(_chars(i) for i in items) + len(req.instructions or "")
    size = own + sum(_chars(i) for i in history)
    if len(items) > MAX_ITEMS or own > max_chars:
        raise InvalidRequest(f"input is too large (at most {MAX_ITEMS} items and {max_chars} "
                             "characters)", param="input")
    if len(conversation) > MAX_ITEMS or size > max_chars:
        raise InvalidRequest(f"the conversation would be too large ({len(conversation)} items, "
                             f"{size} characters; at most {MAX_ITEMS} and {max_chars})",
                             param="previous_response_id")
    tools = chat_tools(req.tools)
    body: dict[str, Any] = {
        "model": req.model,
        "messages": chat_messages(req.instructions, conversation, first=len(history)),
        "stream": bool(req.stream),
    }
    if req.stream:
        body["stream_options"] = {"include_usage": True}
    optional = {
        "max_tokens": req.max_output_tokens, "temperature": req.temperature,
        "top_p": req.top_p, "tools": tools or None,
        "tool_choice": chat_tool_choice(req.tool_choice, tools),
        "parallel_tool_calls": req.parallel_tool_calls,
        "response_format": response_format(req.text.format if req.text else None),
        "user": req.user,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    extra = req.model_extra or {}
    body.update({k: extra[k] for k in PASSED_THROUGH if k in extra})
    return Plan(conversation=conversation, chat=body)


def input_items(raw: str | list[Any] | None) -> list[Item]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": raw}]
    return [_item(i, item) for i, item in enumerate(raw)]


def _item(index: int, raw: object) -> Item:
    where = f"input[{index}]"
    if not isinstance(raw, dict):
        raise InvalidRequest("each input item must be an object", param=where)
    kind = raw.get("type", "message" if "role" in raw else None)
    schema = ITEM_TYPES.get(kind) if isinstance(kind, str) else None
    if schema is None:
        raise InvalidRequest(f"item type {_shown(kind)} is not supported; use one of "
                             f"{', '.join(ITEM_TYPES)}", param=f"{where}.type")
    item = _checked(schema, raw, where)
    if isinstance(item, MessageItem):
        return {"type": "message", "role": item.role,
                "content": _parts(item.content, f"{where}.content")}
    if isinstance(item, FunctionCallItem):
        return {"type": "function_call", "call_id": item.call_id, "name": item.name,
                "arguments": item.arguments}
    assert isinstance(item, FunctionCallOutputItem)
    output = _parts(item.output, f"{where}.output")
    return {"type": "function_call_output", "call_id": item.call_id,
            "output": output if isinstance(output, str) else _joined(output)}


def _parts(content: str | list[Item], where: str) -> str | list[Item]:
    """Text content as given; any other part (images, files, audio) is refused, not dropped:
    rbee's engines read text only."""
    if isinstance(content, str):
        return content
    parts = []
    for j, raw in enumerate(content):
        kind = raw.get("type") if isinstance(raw, dict) else None
        if kind not in ("input_text", "output_text"):
            raise InvalidRequest(f"content part type {_shown(kind)} is not supported: rbee "
                                 "serves text models (input_text, output_text)",
                                 param=f"{where}[{j}].type")
        part = _checked(TextPart, raw, f"{where}[{j}]")
        assert isinstance(part, TextPart)
        parts.append({"type": part.type, "text": part.text})
    return parts


def chat_messages(instructions: str | None, items: Sequence[Item], first: int = 0
                  ) -> list[dict[str, Any]]:
    """Chat messages for `items`; `first` is where this request's own input starts (for
    naming an item in an error)."""
    messages: list[dict[str, Any]] = []
    if instructions:
        messages.append({"role": "system", "content": instructions})
    calls: set[str] = set()
    for index, item in enumerate(items):
        kind = item["type"]
        if kind == "message":
            role = "system" if item["role"] == "developer" else item["role"]
            messages.append({"role": role, "content": _chat_content(item["content"])})
        elif kind == "function_call":
            calls.add(item["call_id"])
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":  # one turn: text, then calls
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif item["call_id"] not in calls:
            raise InvalidRequest(f"no function_call item with call_id "
                                 f"{_shown(item['call_id'])} comes before this output",
                                 param=f"input[{index - first}].call_id")
        else:
            messages.append({"role": "tool", "tool_call_id": item["call_id"],
                             "content": item["output"]})
    return messages


def _chat_content(content: str | list[Item]) -> str | list[dict[str, str]]:
    if isinstance(content, str):
        return content
    return [{"type": "text", "text": p["text"]} for p in content]


def chat_tools(raw: list[Any] | None) -> list[dict[str, Any]]:
    """Responses function tools are flat; chat nests them under `function`."""
    tools: list[dict[str, Any]] = []
    for i, item in enumerate(raw or ()):
        if not isinstance(item, dict):
            raise InvalidRequest("each tool must be an object", param=f"tools[{i}]")
        if item.get("type") != "function":
            raise InvalidRequest(f"tool type {_shown(item.get('type'))} is not supported: "
                                 "rbee runs function tools only", param=f"tools[{i}].type")
        tool = _checked(FunctionTool, item, f"tools[{i}]")
        assert isinstance(tool, FunctionTool)
        function = tool.model_dump(include={"name", "description", "parameters", "strict"},
                                   exclude_none=True)
        tools.append({"type": "function", "function": function})
    names = [t["function"]["name"] for t in tools]
    if len(set(names)) != len(names):
        raise InvalidRequest("tool names must be unique", param="tools")
    return tools


def chat_tool_choice(raw: object, tools: Sequence[Mapping[str, Any]]
                     ) -> str | dict[str, Any] | None:
    if raw is None:
        return None
    names = {t["function"]["name"] for t in tools}
    if isinstance(raw, str):
        if raw not in TOOL_CHOICES:
            raise InvalidRequest(f"tool_choice must be one of {sorted(TOOL_CHOICES)} or a "
                                 "function", param="tool_choice")
        if raw == "required" and not names:
            raise InvalidRequest("tool_choice 'required' needs tools", param="tool_choice")
        return raw
    if (not isinstance(raw, dict) or raw.get("type") != "function"
            or not isinstance(raw.get("name"), str)):
        raise InvalidRequest("tool_choice must be auto, none, required or "
                             '{"type": "function", "name": …}', param="tool_choice")
    if raw["name"] not in names:
        raise InvalidRequest(f"tool_choice names function {_shown(raw['name'])}, which is not "
                             "among the tools", param="tool_choice")
    return {"type": "function", "function": {"name": raw["name"]}}


def response_format(raw: Item | None) -> dict[str, Any] | None:
    """`text.format` as chat's `response_format` (enforcing it is the worker's business)."""
    if raw is None or raw.get("type") == "text":
        return None
    if raw.get("type") == "json_object":
        return {"type": "json_object"}
    if raw.get("type") != "json_schema":
        raise InvalidRequest(f"text.format type {_shown(raw.get('type'))} is not supported; "
                             "use text, json_object or json_schema", param="text.format.type")
    fmt = _checked(JsonSchemaFormat, raw, "text.format")
    assert isinstance(fmt, JsonSchemaFormat)
    schema = {"name": fmt.name, "schema": fmt.schema_, "description": fmt.description,
              "strict": fmt.strict}
    return {"type": "json_schema",
            "json_schema": {k: v for k, v in schema.items() if v is not None}}


def _checked(schema: type[BaseModel], raw: Item, where: str) -> BaseModel:
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        # pydantic names the union branch it tried (`content.str`): clients know no branches.
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"]
                       if p not in _UNION_BRANCHES)
        # Never quotes the input: it is the client's, and may carry control characters.
        raise InvalidRequest(f"{first['msg']} (at '{where}{path}')",
                             param=f"{where}{path}") from None


def _joined(parts: str | list[Item]) -> str:
    return parts if isinstance(parts, str) else "".join(p["text"] for p in parts)


def _chars(item: Item) -> int:
    total = 0
    for key in ("content", "output", "arguments"):
        value = item.get(key)
        if value is not None:
            total += len(_joined(value))
    return total


def _shown(value: object) -> str:
    """A client's value in a message: short, and printable (repr escapes control chars)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."
