"""Server-sent-event framing shared by every daemon."""

from __future__ import annotations

import json
from typing import Any

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"


def data_frame(payload: dict[str, Any]) -> bytes:
    """An OpenAI-style `data: {json}` frame."""
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def event_frame(seq: int, event: str, payload: dict[str, Any]) -> bytes:
    """A job-stream frame: `id:`, `event:` and JSON `data:`."""
    body = json.dumps(payload, separators=(",", ":"))
    return f"id: {seq}\nevent: {event}\ndata: {body}\n\n".encode()


def parse_data_line(line: str) -> str | None:
    """The payload of a `data:` line, or None for comments, ids and blank lines."""
    if line.startswith("data:"):
        return line[5:].lstrip(" ")
    return None
