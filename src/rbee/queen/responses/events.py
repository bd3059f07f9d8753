"""A worker's chat chunks as the Responses event stream.

The order is the one the official SDKs accumulate (and check): `response.created`,
`response.in_progress`, then per output item `output_item.added`, its content
(`content_part.added`, `output_text.delta`…, `output_text.done`, `content_part.done` for a
message; `function_call_arguments.delta`…, `.done` for a call) and `output_item.done`, and
last `response.completed` (`response.incomplete` at the token limit, `response.failed` on
an error). Every event carries the next `sequence_number`. An item is open until the next
one starts or the answer ends: chat deltas interleave nothing, so one open item suffices.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from rbee.api.responses import (
    ChatAnswer,
    ChatToolCall,
    FunctionCall,
    ItemStatus,
    OutputItem,
    OutputMessage,
    OutputText,
    ResponseError,
    ResponseObject,
    Usage,
)
from rbee.core.errors import InvalidRequest, QueueFull, RbeeError
from rbee.queen.responses.outputs import finished, item_status, new_id, usage


@dataclass
class _Text:
    id: str
    text: str = ""


@dataclass
class _Call:
    index: int | None
    id: str
    call_id: str
    name: str
    arguments: str = ""


@dataclass
class EventStream:
    """Turns chunks into frames; `start`, `feed`…, then `finish` or `fail`."""

    response: ResponseObject  # the skeleton (status in_progress, no output)
    sequence: int = 0
    output: list[OutputItem] = field(default_factory=list)
    finish_reason: str | None = None
    used: Usage | None = None
    _open: _Text | _Call | None = None

    def start(self) -> list[bytes]:
        body = self.response.model_dump(mode="json")
        return [self._event("response.created", response=body),
                self._event("response.in_progress", response=body)]

    def feed(self, chunk: ChatAnswer) -> list[bytes]:
        frames: list[bytes] = []
        if chunk.usage is not None:
            self.used = usage(chunk.usage)
        for choice in chunk.choices[:1]:
            delta = choice.delta
            if delta is not None and delta.content:
                frames += self._text(delta.content)
            for call in (delta.tool_calls or ()) if delta is not None else ():
                frames += self._call(call)
            self.finish_reason = choice.finish_reason or self.finish_reason
        return frames

    def finish(self, now: int) -> tuple[ResponseObject, list[bytes]]:
        frames = self._close(item_status(self.finish_reason))
        self.response = finished(self.response, self.output, self.finish_reason, self.used,
                                 now)
        kind = ("response.incomplete" if self.response.status == "incomplete"
                else "response.completed")
        return self.response, [*frames, self._event(kind, response=self._dump())]

    def fail(self, exc: RbeeError) -> tuple[ResponseObject, bytes]:
        """The answer broke mid-stream: headers are gone, so the error is an event."""
        if self._open is not None:  # what came so far, marked unfinished
            self.output.append(self._item(self._open, "incomplete"))
            self._open = None
        error = ResponseError(code=_error_code(exc), message=exc.message)
        self.response = self.response.model_copy(update={
            "status": "failed", "error": error, "output": self.output, "usage": self.used})
        return self.response, self._event("response.failed", response=self._dump())

    def _text(self, text: str) -> list[bytes]:
        frames: list[bytes] = []
        if not isinstance(self._open, _Text):
            frames += self._close("completed")
            self._open = _Text(id=new_id("msg"))
            frames += [
                self._event("response.output_item.added", output_index=len(self.output),
                            item=self._dumped(self._item(self._open, "in_progress"))),
                self._event("response.content_part.added", item_id=self._open.id,
                            output_index=len(self.output), content_index=0,
                            part=OutputText(text="").model_dump(mode="json"))]
        self._open.text += text
        frames.append(self._event("response.output_text.delta", item_id=self._open.id,
                                  output_index=len(self.output), content_index=0, delta=text,
                                  logprobs=[]))
        return frames

    def _call(self, call: ChatToolCall) -> list[bytes]:
        frames: list[bytes] = []
        function = call.function
        opened = self._open
        if not isinstance(opened, _Call) or (call.index is not None
                                             and call.index != opened.index):
            frames += self._close("completed")
            opened = _Call(index=call.index, id=new_id("fc"), call_id=call.id or new_id("call"),
                           name=(function.name if function else None) or "")
            self._open = opened
            frames.append(self._event("response.output_item.added",
                                      output_index=len(self.output),
                                      item=self._dumped(self._item(opened, "in_progress"))))
        elif function is not None and function.name and not opened.name:
            opened.name = function.name  # a name split from its call's first delta
        if function is not None and function.arguments:
            opened.arguments += function.arguments
            frames.append(self._event("response.function_call_arguments.delta",
                                      item_id=opened.id, output_index=len(self.output),
                                      delta=function.arguments))
        return frames

    def _close(self, status: ItemStatus) -> list[bytes]:
        opened, self._open = self._open, None
        if opened is None:
            return []
        index = len(self.output)
        item = self._item(opened, status)
        self.output.append(item)
        if isinstance(opened, _Text):
            part = OutputText(text=opened.text).model_dump(mode="json")
            frames = [
                self._event("response.output_text.done", item_id=opened.id, output_index=index,
                            content_index=0, text=opened.text, logprobs=[]),
                self._event("response.content_part.done", item_id=opened.id,
                            output_index=index, content_index=0, part=part)]
        else:
            frames = [self._event("response.function_call_arguments.done", item_id=opened.id,
                                  output_index=index, name=opened.name,
                                  arguments=opened.arguments)]
        frames.append(self._event("response.output_item.done", output_index=index,
                                  item=self._dumped(item)))
        return frames

    @staticmethod
    def _item(opened: _Text | _Call, status: ItemStatus) -> OutputItem:
        if isinstance(opened, _Text):
            return OutputMessage(id=opened.id, status=status,
                                 content=[OutputText(text=opened.text)] if opened.text else [])
        return FunctionCall(id=opened.id, call_id=opened.call_id, name=opened.name,
                            arguments=opened.arguments, status=status)

    @staticmethod
    def _dumped(item: OutputItem) -> dict[str, Any]:
        return item.model_dump(mode="json")

    def _dump(self) -> dict[str, Any]:
        return self.response.model_dump(mode="json")

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        data = json.dumps(payload, separators=(",", ":"))
        return f"event: {kind}\ndata: {data}\n\n".encode()


def _error_code(exc: RbeeError) -> str:
    """The spec's ResponseErrorCode is a closed set: the nearest of it."""
    if isinstance(exc, QueueFull):
        return "rate_limit_exceeded"
    if isinstance(exc, InvalidRequest):
        return "invalid_prompt"
    return "server_error"
