"""The tool-call text format: raw model text to content or tool-call pieces."""

from __future__ import annotations

import json

import pytest

from rbee.engines.base import Finish, Output, Piece, ToolCallPiece
from rbee.engines.grammar import literal
from rbee.engines.tool_format import render_calls, split_calls, tool_response, with_tools

CALLS = ('<tool_call>[{"name": "get_weather", "arguments": {"city": "Paris", "n": [1, {"a": '
         '"}]"}]}}, {"name": "noop", "arguments": {}}]</tool_call>')


def _split(text: str, size: int) -> list[Output]:
    pieces: list[Output] = [Piece(text[i:i + size]) for i in range(0, len(text), size)]
    return list(split_calls(iter([*pieces, Finish("stop", 3, len(pieces))])))


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 1000])
def test_calls_come_back_whole_however_the_text_is_split(size: int) -> None:
    out = _split(CALLS, size)
    calls: dict[int, dict[str, str]] = {}
    for item in out:
        if isinstance(item, ToolCallPiece):
            call = calls.setdefault(item.index, {"name": "", "arguments": ""})
            call["name"] += item.name or ""
            call["arguments"] += item.arguments
    assert calls == {0: {"name": "get_weather",
                         "arguments": '{"city": "Paris", "n": [1, {"a": "}]"}]}'},
                     1: {"name": "noop", "arguments": "{}"}}
    assert json.loads(calls[0]["arguments"])["n"][1] == {"a": "}]"}
    assert not [o for o in out if isinstance(o, Piece)]
    finish = out[-1]
    assert isinstance(finish, Finish) and finish.reason == "tool_calls"


@pytest.mark.parametrize("text", ["Hello there", "<b>bold</b>", "<", "<tool"])
def test_text_passes_through(text: str) -> None:
    out = _split(text, 2)
    assert "".join(o.text for o in out if isinstance(o, Piece)) == text
    assert isinstance(out[-1], Finish) and out[-1].reason == "stop"


def test_rendering_history() -> None:
    rendered = render_calls([{"name": "f", "arguments": {"x": 1}}])
    assert rendered == '<tool_call>[{"name": "f", "arguments": {"x": 1}}]</tool_call>'
    assert json.loads(tool_response("f", "21 C")[len("<tool_response>"):-16]) == {
        "name": "f", "content": "21 C"}
    merged = with_tools([{"role": "system", "content": "Be brief."}], "TOOLS")
    assert merged == [{"role": "system", "content": "Be brief.\n\nTOOLS"}]
    assert with_tools([{"role": "user", "content": "q"}], "T")[0]["role"] == "system"


def test_literals_escape_what_gbnf_needs() -> None:
    assert literal('a"b\\c\nd') == '"a\\"b\\\\c\\x0Ad"'
