"""Engine output to OpenAI wire format (chat and text completions, streamed or not)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from rbee.api import sse
from rbee.api.openai import chat_chunk, text_chunk
from rbee.core.errors import RbeeError
from rbee.engines.base import Finish, Output, Piece

Kind = Literal["chat", "completion"]


def _usage(finish: Finish) -> dict[str, int]:
    return {
        "prompt_tokens": finish.prompt_tokens,
        "completion_tokens": finish.completion_tokens,
        "total_tokens": finish.prompt_tokens + finish.completion_tokens,
    }


def _reason(finish: Finish) -> str:
    return "length" if finish.reason == "length" else "stop"


class Formatter:
    """Builds the frames of one response; ids and timestamps are fixed per response."""

    def __init__(self, kind: Kind, model: str) -> None:
        self.kind = kind
        self.model = model
        prefix = "chatcmpl" if kind == "chat" else "cmpl"
        self.cid = f"{prefix}-{uuid.uuid4().hex}"
        self.created = int(time.time())

    def chunk(self, text: str | None, finish: str | None, first: bool = False) -> dict[str, Any]:
        if self.kind == "completion":
            return text_chunk(cid=self.cid, created=self.created, model=self.model,
                              text=text or "", finish=finish)
        delta: dict[str, Any] = {}
        if first:
            delta["role"] = "assistant"
        if text is not None:
            delta["content"] = text
        return chat_chunk(cid=self.cid, created=self.created, model=self.model, delta=delta,
                          finish=finish)

    def usage_chunk(self, finish: Finish) -> dict[str, Any]:
        obj = "chat.completion.chunk" if self.kind == "chat" else "text_completion"
        return {"id": self.cid, "object": obj, "created": self.created, "model": self.model,
                "choices": [], "usage": _usage(finish)}

    def whole(self, text: str, finish: Finish) -> dict[str, Any]:
        if self.kind == "completion":
            choice: dict[str, Any] = {"index": 0, "text": text, "logprobs": None,
                                      "finish_reason": _reason(finish)}
            obj = "text_completion"
        else:
            choice = {"index": 0, "logprobs": None, "finish_reason": _reason(finish),
                      "message": {"role": "assistant", "content": text, "refusal": None}}
            obj = "chat.completion"
        # No `system_fingerprint`: the spec types it a string, and rbee has none to give
        # (null broke strict clients' schema checks).
        return {"id": self.cid, "object": obj, "created": self.created, "model": self.model,
                "choices": [choice], "usage": _usage(finish)}


async def sse_stream(
    outputs: AsyncIterator[Output], fmt: Formatter, include_usage: bool
) -> AsyncIterator[bytes]:
    """OpenAI SSE frames; an error after the first frame becomes an error frame + [DONE]."""
    try:
        if fmt.kind == "chat":
            yield sse.data_frame(fmt.chunk("", None, first=True))
        async for item in outputs:
            if isinstance(item, Piece):
                yield sse.data_frame(fmt.chunk(item.text, None))
                continue
            yield sse.data_frame(fmt.chunk(None if fmt.kind == "chat" else "", _reason(item)))
            if include_usage:
                yield sse.data_frame(fmt.usage_chunk(item))
    except RbeeError as exc:
        yield sse.data_frame(exc.to_envelope())
    yield sse.DONE


async def collect(outputs: AsyncIterator[Output], fmt: Formatter) -> dict[str, Any]:
    parts: list[str] = []
    async for item in outputs:
        if isinstance(item, Piece):
            parts.append(item.text)
        else:
            return fmt.whole("".join(parts), item)
    raise RuntimeError("engine ended without a Finish")  # pragma: no cover - engine contract
