"""The client reads job streams as the SSE spec says (it once glued `data:` lines together)."""

from __future__ import annotations

import httpx
import pytest

from rbee.client import QueenClient
from rbee.client._client import BadStream, StreamEvent


def client_for(body: bytes, content_type: str = "text/event-stream") -> QueenClient:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": content_type}, content=body)

    return QueenClient("http://queen", transport=httpx.MockTransport(answer))


def follow(body: bytes) -> list[StreamEvent]:
    with client_for(body) as client:
        return list(client.follow("job-1"))


def test_a_multi_line_data_field_is_one_json_document() -> None:
    body = (b'id: 0\nevent: result\ndata: {\ndata:   "text": "two words",\n'
            b'data:   "n": [1,\ndata: 2]\ndata: }\n\n'
            b"id: 1\nevent: done\ndata: {}\n\n")
    assert follow(body) == [StreamEvent(0, "result", {"text": "two words", "n": [1, 2]}),
                            StreamEvent(1, "done", {})]


def test_data_lines_are_joined_with_newlines_not_glued() -> None:
    # "1" and "2" on two lines are "1\n2" (not JSON), never the number 12.
    with pytest.raises(BadStream, match="not JSON"):
        follow(b'id: 0\nevent: result\ndata: {"n": 1\ndata: 2}\n\nid: 1\nevent: done\n'
               b"data: {}\n\n")


def test_ids_carry_over_comments_are_skipped_and_crlf_ends_lines() -> None:
    body = (b": keep-alive\r\n\r\nid: 4\r\nevent: token\r\ndata: {\"t\": \"a\"}\r\n\r\n"
            b": keep-alive\r\n\r\nevent: done\r\ndata: {}\r\n\r\n")
    assert follow(body) == [StreamEvent(4, "token", {"t": "a"}), StreamEvent(4, "done", {})]


def test_an_answer_that_is_not_an_event_stream_is_one_clear_error() -> None:
    with client_for(b"<html>", "text/html") as client, \
            pytest.raises(BadStream, match="not answer with an event stream"):
        list(client.follow("job-1"))
