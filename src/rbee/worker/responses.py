"""Engine output to OpenAI wire format (chat and text completions, streamed or not).

A request's choices arrive one after another as `(index, output)`; each choice ends with
its own Finish. Usage counts the prompt once and every choice's completion tokens (as
OpenAI does for n > 1).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rbee.api import sse
from rbee.api.openai import chat_chunk, text_chunk
from rbee.core.errors import RbeeError
from rbee.engines.base import Finish, Output, Piece, TokenLogprob, ToolCallPiece

Kind = Literal["chat", "completion"]
Indexed = tuple[int, Output]


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def _reason(finish: Finish) -> str:
    return finish.reason if finish.reason in ("length", "tool_calls") else "stop"


def _token(raw: bytes, logprob: float) -> dict[str, Any]:
    return {"token": raw.decode("utf-8", errors="replace"), "logprob": logprob,
            "bytes": list(raw)}


def chat_logprobs(tokens: Sequence[TokenLogprob]) -> dict[str, Any]:
    return {"content": [{**_token(t.token, t.logprob),
                         "top_logprobs": [_token(raw, lp) for raw, lp in t.top]}
                        for t in tokens], "refusal": None}


def text_logprobs(tokens: Sequence[TokenLogprob], offset: int) -> dict[str, Any]:
    offsets = []
    for t in tokens:
        offsets.append(offset)
        offset += len(t.token.decode("utf-8", errors="replace"))
    return {"tokens": [t.token.decode("utf-8", errors="replace") for t in tokens],
            "token_logprobs": [t.logprob for t in tokens],
            "top_logprobs": [{raw.decode("utf-8", errors="replace"): lp for raw, lp in t.top}
                             for t in tokens],
            "text_offset": offsets}


@dataclass
class _Choice:
    """What one choice has said so far."""

    parts: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    offset: int = 0  # characters sent (text_offset of completions' logprobs)


class Formatter:
    """Builds the frames of one response; ids and timestamps are fixed per response."""

    def __init__(self, kind: Kind, model: str, *, logprobs: bool = False) -> None:
        self.kind = kind
        self.model = model
        self.logprobs = logprobs
        prefix = "chatcmpl" if kind == "chat" else "cmpl"
        self.cid = f"{prefix}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self._choices: dict[int, _Choice] = {}
        self._call_ids: dict[tuple[int, int], str] = {}

    def choice(self, index: int) -> _Choice:
        return self._choices.setdefault(index, _Choice())

    def call_id(self, choice: int, call: int) -> str:
        return self._call_ids.setdefault((choice, call), f"call_{uuid.uuid4().hex[:24]}")

    def chunk(self, text: str | None, finish: str | None, first: bool = False, *,
              index: int = 0, tokens: Sequence[TokenLogprob] = ()) -> dict[str, Any]:
        lp = self._logprobs(index, tokens) if self.logprobs and tokens else None
        if self.kind == "completion":
            return text_chunk(cid=self.cid, created=self.created, model=self.model,
                              text=text or "", finish=finish, index=index, logprobs=lp)
        delta: dict[str, Any] = {}
        if first:
            delta["role"] = "assistant"
        if text is not None:
            delta["content"] = text
        return chat_chunk(cid=self.cid, created=self.created, model=self.model, delta=delta,
                          finish=finish, index=index, logprobs=lp)

    def _logprobs(self, index: int, tokens: Sequence[TokenLogprob]) -> dict[str, Any]:
        if self.kind == "chat":
            return chat_logprobs(tokens)
        return text_logprobs(tokens, self.choice(index).offset)

    def call_chunk(self, index: int, piece: ToolCallPiece) -> dict[str, Any]:
        call: dict[str, Any] = {"index": piece.index, "function": {"arguments": piece.arguments}}
        if piece.name is not None:
            call.update(id=self.call_id(index, piece.index), type="function")
            call["function"]["name"] = piece.name
        return chat_chunk(cid=self.cid, created=self.created, model=self.model,
                          delta={"tool_calls": [call]}, finish=None, index=index)

    def usage_chunk(self, finish: Finish, completion_tokens: int | None = None
                    ) -> dict[str, Any]:
        obj = "chat.completion.chunk" if self.kind == "chat" else "text_completion"
        done = finish.completion_tokens if completion_tokens is None else completion_tokens
        return {"id": self.cid, "object": obj, "created": self.created, "model": self.model,
                "choices": [], "usage": _usage(finish.prompt_tokens, done)}

    def add(self, index: int, item: Piece | ToolCallPiece) -> None:
        """Remember a choice's output for the whole (non-streamed) answer."""
        choice = self.choice(index)
        if isinstance(item, Piece):
            choice.parts.append(item.text)
            choice.logprobs.extend(item.logprobs)
            return
        call = choice.calls.setdefault(item.index, {
            "id": self.call_id(index, item.index), "type": "function",
            "function": {"name": item.name or "", "arguments": ""}})
        call["function"]["arguments"] += item.arguments

    def whole_choice(self, index: int, finish: Finish) -> dict[str, Any]:
        choice = self.choice(index)
        text = "".join(choice.parts)
        lp: dict[str, Any] | None = None
        if self.kind == "completion":
            if self.logprobs:
                lp = text_logprobs(choice.logprobs, 0)
            return {"index": index, "text": text, "logprobs": lp,
                    "finish_reason": _reason(finish)}
        if self.logprobs:
            lp = chat_logprobs(choice.logprobs)
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        if choice.calls:
            message["tool_calls"] = [choice.calls[i] for i in sorted(choice.calls)]
            message["content"] = text or None
        return {"index": index, "logprobs": lp, "finish_reason": _reason(finish),
                "message": message}

    def whole_answer(self, choices: list[dict[str, Any]], prompt: int, completion: int
                     ) -> dict[str, Any]:
        obj = "text_completion" if self.kind == "completion" else "chat.completion"
        # No `system_fingerprint`: the spec types it a string, and rbee has none to give
        # (null broke strict clients' schema checks).
        return {"id": self.cid, "object": obj, "created": self.created, "model": self.model,
                "choices": choices, "usage": _usage(prompt, completion)}

    def whole(self, text: str, finish: Finish) -> dict[str, Any]:
        """A one-choice answer of plain text."""
        self.add(0, Piece(text))
        return self.whole_answer([self.whole_choice(0, finish)], finish.prompt_tokens,
                                 finish.completion_tokens)


async def sse_stream(outputs: AsyncIterator[Indexed], fmt: Formatter, include_usage: bool
                     ) -> AsyncIterator[bytes]:
    """OpenAI SSE frames; an error after the first frame becomes an error frame + [DONE]."""
    completion = 0
    started: set[int] = set()
    last: Finish | None = None
    try:
        async for index, item in outputs:
            if fmt.kind == "chat" and index not in started:
                started.add(index)
                yield sse.data_frame(fmt.chunk("", None, first=True, index=index))
            if isinstance(item, Piece):
                yield sse.data_frame(fmt.chunk(item.text, None, index=index,
                                               tokens=item.logprobs))
                fmt.choice(index).offset += len(item.text)
            elif isinstance(item, ToolCallPiece):
                yield sse.data_frame(fmt.call_chunk(index, item))
            else:
                completion += item.completion_tokens
                yield sse.data_frame(fmt.chunk(None if fmt.kind == "chat" else "",
                                               _reason(item), index=index))
                last = item
        if include_usage and last is not None:
            yield sse.data_frame(fmt.usage_chunk(last, completion))
    except RbeeError as exc:
        yield sse.data_frame(exc.to_envelope())
    yield sse.DONE


async def collect(outputs: AsyncIterator[Indexed], fmt: Formatter) -> dict[str, Any]:
    choices: list[dict[str, Any]] = []
    prompt = completion = 0
    async for index, item in outputs:
        if isinstance(item, Finish):
            choices.append(fmt.whole_choice(index, item))
            prompt = item.prompt_tokens
            completion += item.completion_tokens
        else:
            fmt.add(index, item)
    if not choices:  # pragma: no cover - engine contract: every choice ends with a Finish
        raise RuntimeError("engine ended without a Finish")
    return fmt.whole_answer(choices, prompt, completion)
