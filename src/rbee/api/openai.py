"""OpenAI-compatible request and response shapes served by the queen and by workers.

Requests accept unknown fields (clients send many we ignore); ranges follow OpenAI's. Types
are strict, as the spec writes them: `"stream": 0` or `"top_p": false` is a 400, not coerced
(a JSON integer is still a valid `number`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from rbee.engines.json_schema import SchemaError, check

MAX_STOP_SEQUENCES = 4
MAX_TOKENS_LIMIT = 1_000_000
# The most choices any request may ask for; a worker's `max_n` setting (default 8) is the
# limit actually applied, since generating them is the worker's cost.
MAX_N_LIMIT = 128
MAX_TOOLS = 128
MAX_LOGIT_BIAS = 300  # OpenAI's own limit on logit_bias entries
_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# C0, DEL, C1 and the Unicode line/paragraph separators: a model name is echoed in answers,
# logs and job narration, where such characters forge lines or terminal escapes.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _printable(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters or line breaks")  # no echo
    return value


ModelName = Annotated[str, AfterValidator(_printable)]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class ImageUrl(_Open):
    url: str = Field(max_length=20_000_000)
    detail: Literal["auto", "low", "high"] | None = None


class ContentPart(_Open):
    type: str
    text: str | None = None
    image_url: ImageUrl | None = None


class FunctionCall(_Open):
    name: str = Field(max_length=64)
    arguments: str = Field(description="The call's arguments, a JSON object as text")


class MessageToolCall(_Open):
    id: str = Field(max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[MessageToolCall] | None = None  # an assistant's earlier calls
    tool_call_id: str | None = Field(default=None, max_length=256)  # a tool result's call

    def text(self) -> str:
        """The message's text parts (the worker refuses other parts a model cannot read)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text or "" for p in self.content if p.type in ("text", "refusal"))

    def other_parts(self) -> list[str]:
        """The types of the parts that are not text (images, audio, files)."""
        if not isinstance(self.content, list):
            return []
        return [p.type for p in self.content if p.type not in ("text", "refusal")]


class StreamOptions(_Open):
    include_usage: bool = False


class SamplingFields(_Open):
    """Sampling fields shared by chat and text completions (and the job API's infer)."""

    model: ModelName = Field(min_length=1, max_length=512, description="Model name or reference")
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS_LIMIT)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0, le=1_000_000)
    seed: int | None = Field(default=None, ge=-(2**63), le=2**64 - 1)
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = Field(
        default=None, description="Token id (as a string) to a bias from -100 to 100")
    n: int | None = Field(default=None, ge=1, le=MAX_N_LIMIT, description="Choices to "
                          "generate (a worker allows up to its max_n, 8 by default)")
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _stop_limit(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list) and len(v) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences are allowed")
        return v

    @field_validator("logit_bias")
    @classmethod
    def _bias(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is None:
            return v
        if len(v) > MAX_LOGIT_BIAS:
            raise ValueError(f"at most {MAX_LOGIT_BIAS} tokens may be biased")
        for key, bias in v.items():
            if not key.isdigit() or len(key) > 9:
                raise ValueError("keys must be token ids (non-negative integers as strings)")
            if not -100 <= bias <= 100:
                raise ValueError("each bias must be from -100 to 100")
        return v

    def bias_map(self) -> dict[int, float]:
        return {int(k): v for k, v in (self.logit_bias or {}).items()}

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class FunctionDefinition(_Open):
    name: str
    description: str | None = Field(default=None, max_length=100_000)
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _FUNCTION_NAME.match(v):
            raise ValueError("a function name is 1 to 64 letters, digits, '_' or '-'")
        return v


class Tool(_Open):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Open):
    name: str = Field(max_length=64)


class NamedToolChoice(_Open):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaSpec(_Open):
    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True)
    name: str = Field(max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextFormat(_Open):
    type: Literal["text"]


class JsonObjectFormat(_Open):
    type: Literal["json_object"]


class JsonSchemaFormat(_Open):
    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


ResponseFormat = Annotated[TextFormat | JsonObjectFormat | JsonSchemaFormat,
                           Field(discriminator="type")]


# OpenAI fields rbee does not honour: refused when set (a 400 naming them), never dropped in
# silence, which would give an answer that looks valid and is not what was asked for.
_UNSUPPORTED_CHAT = {
    "functions": "the deprecated 'functions' are not supported; send 'tools'",
    "function_call": "the deprecated 'function_call' is not supported; send 'tool_choice'",
    "audio": "audio output is not supported",
    "prediction": "predicted outputs are not supported",
    "web_search_options": "web search is not supported",
}


def _refuse_unsupported(value: object, info: ValidationInfo,
                        reasons: dict[str, str]) -> object:
    if value is not None:
        raise ValueError(reasons[info.field_name or ""])
    return value


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    functions: Any = None
    function_call: Any = None
    audio: Any = None
    prediction: Any = None
    web_search_options: Any = None
    modalities: list[str] | None = None
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS_LIMIT)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    tools: list[Tool] | None = Field(default=None, max_length=MAX_TOOLS)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @field_validator(*_UNSUPPORTED_CHAT)
    @classmethod
    def _unsupported(cls, v: object, info: ValidationInfo) -> object:
        return _refuse_unsupported(v, info, _UNSUPPORTED_CHAT)

    @field_validator("modalities")
    @classmethod
    def _text_only(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and set(v) != {"text"}:
            raise ValueError("only the 'text' modality is supported")
        return v

    @field_validator("tools")
    @classmethod
    def _tools(cls, v: list[Tool] | None) -> list[Tool] | None:
        names = set()
        for i, tool in enumerate(v or []):
            fn = tool.function
            if fn.name in names:
                raise ValueError(f"two tools are named {fn.name!r}")
            names.add(fn.name)
            if fn.parameters is not None:
                fn.parameters = _enforceable(fn.parameters, f"tools[{i}].function.parameters")
        return v

    @field_validator("top_logprobs")
    @classmethod
    def _top_needs_logprobs(cls, v: int | None, info: ValidationInfo) -> int | None:
        if v and not info.data.get("logprobs"):
            raise ValueError("top_logprobs needs logprobs: true")
        return v

    @field_validator("tool_choice")
    @classmethod
    def _choice(cls, v: object, info: ValidationInfo) -> object:
        tools: list[Tool] = info.data.get("tools") or []
        if isinstance(v, NamedToolChoice):
            if v.function.name not in {t.function.name for t in tools}:
                raise ValueError(f"tool_choice names {v.function.name!r}, which is not "
                                 "among the request's tools")
        elif v == "required" and not tools:
            raise ValueError("tool_choice 'required' needs tools")
        return v

    @field_validator("response_format")
    @classmethod
    def _format(cls, v: object) -> object:
        if isinstance(v, JsonSchemaFormat):
            schema = v.json_schema.schema_
            v.json_schema.schema_ = _enforceable(schema if schema is not None else {},
                                                 "response_format.json_schema.schema")
        return v

    def output_schema(self) -> dict[str, Any] | None:
        """The (normalized) schema the answer must match, if any."""
        fmt = self.response_format
        if isinstance(fmt, JsonObjectFormat):
            return {"type": "object"}
        if isinstance(fmt, JsonSchemaFormat):
            return fmt.json_schema.schema_
        return None


def _enforceable(schema: dict[str, Any], what: str) -> dict[str, Any]:
    try:
        return check(schema, what=what)
    except SchemaError as exc:
        raise ValueError(str(exc)) from None


class CompletionRequest(SamplingFields):
    prompt: str | list[str]
    echo: bool | None = None
    best_of: int | None = Field(default=None, ge=0, le=20)
    suffix: str | None = None
    logprobs: int | None = Field(default=None, ge=0, le=5)

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, v: bool | None) -> bool | None:
        if v:
            raise ValueError("echo is not supported")
        return v

    @field_validator("best_of")
    @classmethod
    def _no_best_of(cls, v: int | None) -> int | None:
        if v is not None and v > 1:
            raise ValueError("best_of above 1 is not supported (n is)")
        return v

    @field_validator("suffix")
    @classmethod
    def _no_suffix(cls, v: str | None) -> str | None:
        if v:
            raise ValueError("suffix (insertion) is not supported")
        return v

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and len(v) != 1:
            raise ValueError("exactly one prompt is supported")
        return v

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def token_limit(self) -> int | None:
        return self.max_tokens


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "rbee"
    kind: Literal["chat", "embedding", "speech", "video"] = Field(
        default="chat", description="what the model does: chat (text), embedding (vectors), "
        "speech (audio from text) or video (videos from text)")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def chat_chunk(
    *, cid: str, created: int, model: str, delta: dict[str, Any], finish: str | None,
    index: int = 0, logprobs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    # No `system_fingerprint`: the spec types it a string and rbee has none (null is invalid).
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": index, "delta": delta, "logprobs": logprobs,
                     "finish_reason": finish}],
    }


def text_chunk(
    *, cid: str, created: int, model: str, text: str, finish: str | None, index: int = 0,
    logprobs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"index": index, "text": text, "logprobs": logprobs,
                     "finish_reason": finish}],
    }
