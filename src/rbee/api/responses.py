"""The Responses API's wire shapes (`POST|GET|DELETE /v1/responses[/{id}]`).

Requests accept unknown fields and check types strictly, like the chat models. Input items
and tools arrive as plain objects and are checked one by one (`queen.responses.inputs`), so
that an error names the item it is about (`input[3].call_id`), which a union of models
cannot do: pydantic reports every branch it tried.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

MAX_TOKENS_LIMIT = 1_000_000  # the chat routes' bound (api.openai.MAX_TOKENS_LIMIT)
MAX_METADATA_KEYS = 16
# C0, DEL, C1 and the Unicode line separators: the model name is echoed in answers and logs.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
TOOL_NAME = r"^[a-zA-Z0-9_-]{1,64}$"


def _printable(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters or line breaks")  # no echo
    return value


def _metadata(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is None:
        return None
    if len(value) > MAX_METADATA_KEYS:
        raise ValueError(f"at most {MAX_METADATA_KEYS} metadata keys are allowed")
    if any(len(k) > 64 or len(v) > 512 for k, v in value.items()):
        raise ValueError("metadata keys are at most 64 characters, values at most 512")
    return value


Printable = Annotated[str, AfterValidator(_printable)]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class TextConfig(_Open):
    format: dict[str, Any] | None = Field(default=None, description="text, json_object or "
                                          "json_schema (structured output)")


class ResponsesRequest(_Open):
    """`POST /v1/responses`."""

    model: Printable = Field(min_length=1, max_length=512, description="Model name or reference")
    input: str | list[Any] | None = Field(
        default=None, description="A user message, or a list of items (messages, "
        "function_call, function_call_output)")
    instructions: str | None = Field(default=None, description="A system message for this "
                                     "response only (not carried over by "
                                     "previous_response_id)")
    tools: list[Any] | None = Field(default=None, description="Function tools")
    tool_choice: Any = Field(default=None, description="auto, none, required or "
                             '{"type": "function", "name": …}')
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    max_output_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS_LIMIT)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    stream: bool | None = False
    store: bool | None = Field(default=True, description="Keep the response for GET and "
                               "previous_response_id")
    previous_response_id: Printable | None = Field(default=None, min_length=1, max_length=128)
    metadata: Annotated[dict[str, str] | None, AfterValidator(_metadata)] = None
    user: str | None = Field(default=None, max_length=512)
    background: bool | None = Field(default=None, description="Not supported: must be false")


# -- input items (checked one at a time, see the module docstring) ------------------------

class TextPart(_Open):
    type: Literal["input_text", "output_text"]
    text: str


class MessageItem(_Open):
    type: Literal["message"] = "message"
    role: Literal["user", "system", "developer", "assistant"]
    content: str | list[dict[str, Any]]


class FunctionCallItem(_Open):
    type: Literal["function_call"]
    call_id: str = Field(min_length=1, max_length=128)
    name: str = Field(pattern=TOOL_NAME)
    arguments: str


class FunctionCallOutputItem(_Open):
    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1, max_length=128)
    output: str | list[dict[str, Any]]


class FunctionTool(_Open):
    type: Literal["function"]
    name: str = Field(pattern=TOOL_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class JsonSchemaFormat(_Open):
    type: Literal["json_schema"]
    name: str = Field(pattern=TOOL_NAME)
    schema_: dict[str, Any] = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None


# -- the answer ----------------------------------------------------------------------------

class OutputText(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[dict[str, Any]] = Field(default_factory=list)
    logprobs: list[dict[str, Any]] = Field(default_factory=list)


ItemStatus = Literal["in_progress", "completed", "incomplete"]


class OutputMessage(BaseModel):
    type: Literal["message"] = "message"
    id: str
    role: Literal["assistant"] = "assistant"
    status: ItemStatus
    content: list[OutputText]


class FunctionCall(BaseModel):
    type: Literal["function_call"] = "function_call"
    id: str
    call_id: str
    name: str
    arguments: str
    status: ItemStatus


OutputItem = Annotated[OutputMessage | FunctionCall, Field(discriminator="type")]


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class Usage(BaseModel):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)


class ResponseError(BaseModel):
    code: str  # the spec's ResponseErrorCode: "server_error", "rate_limit_exceeded", …
    message: str


class IncompleteDetails(BaseModel):
    reason: Literal["max_output_tokens", "content_filter"]


Status = Literal["completed", "failed", "in_progress", "incomplete"]


class ResponseObject(BaseModel):
    """A Response, as `POST` answers it and `GET` returns it (spec fields, nullable kept)."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    completed_at: int | None = None
    status: Status
    model: str
    output: list[OutputItem] = Field(default_factory=list)
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    parallel_tool_calls: bool = True
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    previous_response_id: str | None = None
    tool_choice: str | dict[str, Any] = "auto"
    tools: list[dict[str, Any]] = Field(default_factory=list)
    text: dict[str, Any] = Field(default_factory=lambda: {"format": {"type": "text"}})
    store: bool = True
    truncation: Literal["disabled"] = "disabled"
    usage: Usage | None = None
    user: str | None = None


class DeletedResponse(BaseModel):
    id: str
    object: Literal["response"] = "response"
    deleted: Literal[True] = True


# -- what the queen reads of a worker's chat answer (lenient: only the fields it uses) ------

class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ChatFunction(_Lenient):
    name: str | None = None
    arguments: str | None = None


class ChatToolCall(_Lenient):
    index: int | None = None  # streamed deltas only
    id: str | None = None
    function: ChatFunction | None = None


class ChatMessageOut(_Lenient):
    content: str | None = None
    tool_calls: list[ChatToolCall] | None = None


class ChatChoice(_Lenient):
    message: ChatMessageOut | None = None  # a whole answer
    delta: ChatMessageOut | None = None  # a stream's chunk
    finish_reason: str | None = None


class ChatUsage(_Lenient):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_tokens_details: dict[str, Any] | None = None


class ChatAnswer(_Lenient):
    """A chat completion, or one chunk of a streamed one."""

    choices: list[ChatChoice] = Field(default_factory=list)
    usage: ChatUsage | None = None
