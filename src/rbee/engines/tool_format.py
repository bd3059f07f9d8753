"""How tools reach a model without a native tool template, and how its calls come back.

The format is SmolLM2's own (its instruct data taught it): the tools go in the system
prompt as JSON inside `<tools></tools>`, and the model calls them with
`<tool_call>[{"name": ..., "arguments": {...}}]</tool_call>` (several calls in one list).
The grammar (`engines.grammar.for_tools`) holds the model to that shape, so the parser here
can be a small state machine: it turns the raw text into content pieces or tool-call pieces
(name first, then the arguments' JSON text as it is written), as OpenAI streams them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from rbee.engines.base import Finish, Output, Piece, ToolCallPiece, ToolSpec
from rbee.engines.grammar import TOOL_CLOSE, TOOL_OPEN

_HEAD = re.compile(r'\s*,?\s*\{"name":\s*"((?:[^"\\]|\\.)*)",\s*"arguments":\s*')
_GIVE_UP = 4096  # characters of an unparsable head before the rest is dropped


def system_prompt(tools: Sequence[ToolSpec], forced: str | None, required: bool) -> str:
    listed = [{"name": t.name, "description": t.description, "parameters": t.parameters}
              for t in tools]
    if forced is not None:
        rule = f"You must call the function {forced}."
    elif required:
        rule = "You must call at least one function."
    else:
        rule = "If none of the functions fits, answer the user directly in plain text."
    return ("You can call functions. They are listed in JSON inside <tools></tools>:\n"
            f"<tools>{json.dumps(listed, ensure_ascii=False)}</tools>\n"
            "To call functions, answer only with\n"
            '<tool_call>[{"name": "function name", "arguments": {"argument": "value"}}]'
            f"</tool_call>\n{rule}")


def render_call(name: str, arguments: str) -> dict[str, Any]:
    try:
        args: object = json.loads(arguments)
    except ValueError:
        args = arguments  # the client's own text, passed on as it is
    return {"name": name, "arguments": args}


def render_calls(calls: Sequence[dict[str, Any]]) -> str:
    return TOOL_OPEN[:-1] + json.dumps(calls, ensure_ascii=False) + TOOL_CLOSE[1:]


def tool_response(name: str | None, content: str) -> str:
    """A tool's result as the model reads it: a user turn, as Qwen/Hermes templates do (a
    'tool' role is one SmolLM2's template knows nothing of)."""
    body = {"name": name, "content": content} if name else {"content": content}
    return f"<tool_response>{json.dumps(body, ensure_ascii=False)}</tool_response>"


def with_tools(messages: list[dict[str, str]], prompt: str) -> list[dict[str, str]]:
    """`prompt` added to the first system message (or as one, first)."""
    if messages and messages[0]["role"] in ("system", "developer"):
        first = {"role": "system", "content": f"{messages[0]['content']}\n\n{prompt}"}
        return [first, *messages[1:]]
    return [{"role": "system", "content": prompt}, *messages]


class CallParser:
    """Raw model text in, Pieces (text) and ToolCallPieces out."""

    def __init__(self) -> None:
        self.mode = "start"  # start -> text | head <-> args -> tail -> head ... -> done
        self.buf = ""
        self.calls = 0
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._held: list[Piece] = []

    def feed(self, piece: Piece) -> Iterator[Output]:
        if self.mode == "text":
            yield piece
            return
        if self.mode == "start":
            self._held.append(piece)
            text = "".join(p.text for p in self._held)
            if TOOL_OPEN.startswith(text):
                return
            if not text.startswith(TOOL_OPEN):
                self.mode = "text"
                held, self._held = self._held, []
                yield Piece(text, tuple(t for p in held for t in p.logprobs))
                return
            self.mode, self.buf, self._held = "head", text[len(TOOL_OPEN):], []
        else:
            self.buf += piece.text
        yield from self._drain()

    def _drain(self) -> Iterator[Output]:
        while self.buf and self.mode != "done":
            before = (self.mode, len(self.buf))
            if self.mode == "head":
                yield from self._head()
            elif self.mode == "args":
                yield from self._args()
            else:
                self._tail()
            if (self.mode, len(self.buf)) == before:
                return  # needs more text

    def _head(self) -> Iterator[Output]:
        stripped = self.buf.lstrip(" ,")
        if stripped.startswith("]"):
            self.mode = "done"
            return
        match = _HEAD.match(self.buf)
        if match is None:
            if len(self.buf) > _GIVE_UP:
                self.mode = "done"
            return
        name = json.loads(f'"{match.group(1)}"')
        self.buf = self.buf[match.end():]
        self.mode = "args"
        self._depth, self._in_string, self._escaped = 0, False, False
        yield ToolCallPiece(index=self.calls, arguments="", name=name)

    def _closes(self, ch: str) -> bool:
        """Advance the JSON scanner by one character; True when the arguments end."""
        if self._in_string:
            if self._escaped:
                self._escaped = False
            elif ch == "\\":
                self._escaped = True
            elif ch == '"':
                self._in_string = False
        elif ch == '"':
            self._in_string = True
        elif ch in "{[":
            self._depth += 1
        elif ch in "}]":
            self._depth -= 1
            return self._depth == 0
        return False

    def _args(self) -> Iterator[Output]:
        if self._depth == 0:  # the space after "arguments": may come in a later piece
            self.buf = self.buf.lstrip()
        end = next((i + 1 for i, ch in enumerate(self.buf) if self._closes(ch)), None)
        cut = len(self.buf) if end is None else end
        piece, self.buf = self.buf[:cut], self.buf[cut:]
        if piece:
            yield ToolCallPiece(index=self.calls, arguments=piece)
        if end is not None:
            self.mode = "tail"
            self.calls += 1

    def _tail(self) -> None:
        stripped = self.buf.lstrip()
        if stripped.startswith("}"):
            self.buf, self.mode = stripped[1:], "head"
        elif stripped:
            self.mode = "done"

    def finish(self, finish: Finish) -> Iterator[Output]:
        if self._held:  # fewer characters than the marker: it was text after all
            yield Piece("".join(p.text for p in self._held))
        if self.calls and finish.reason == "stop":
            yield replace(finish, reason="tool_calls")
        else:
            yield finish


def split_calls(outputs: Iterator[Output]) -> Iterator[Output]:
    """Engine output with the tool-call text turned into ToolCallPieces."""
    parser = CallParser()
    for item in outputs:
        if isinstance(item, Piece):
            yield from parser.feed(item)
        elif isinstance(item, Finish):
            yield from parser.finish(item)
        else:
            yield item
